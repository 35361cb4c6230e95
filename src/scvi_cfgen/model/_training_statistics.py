"""Statistics learned from the training cells: attribute frequencies, size factors, latents."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from scvi_cfgen._constants import X_KEY
from scvi_cfgen._validation import row_sums

from ._clusters import attribute_codes
from ._model_state import latent_moments

#: Categories with fewer training cells than this are reported before training.
SMALL_CATEGORY_CELLS = 10


def fit_data_statistics(model, train_indices: np.ndarray) -> None:
    """Attribute frequencies and size-factor laws of the training cells only."""
    manager = model.adata_manager
    if model.has_rna:
        libraries = row_sums(manager.get_from_registry(X_KEY))[train_indices]
    else:  # no RNA library: a placeholder the ATAC-only model never uses
        libraries = np.ones(len(train_indices))
    all_codes = attribute_codes(model)[train_indices]
    codes = torch.as_tensor(all_codes, dtype=torch.long).reshape(len(train_indices), -1)
    fit_cell_statistics(model, codes, torch.as_tensor(libraries))


def fit_cell_statistics(model, codes: torch.Tensor, libraries: torch.Tensor) -> None:
    """Fit the module's data statistics to training cells' codes and total counts.

    ``codes`` is ``(n_cells, n_attributes)``; ``libraries`` the cells' total counts (ones for an
    ATAC-only model).
    """
    report_small_categories(model.attribute_categories, codes.numpy())
    size_index = model.module.size_factor_attribute_index
    model.module.statistics.fit_attributes_and_sizes(
        codes,
        torch.log(libraries.double()),
        None if size_index is None else codes[:, size_index],
    )


def report_small_categories(attribute_categories: dict, codes: np.ndarray) -> None:
    """Warn, by name and count, about categories with few training cells."""
    small = {}
    for index, (name, categories) in enumerate(attribute_categories.items()):
        counts = np.bincount(codes[:, index], minlength=len(categories))
        few = {str(c): int(n) for c, n in zip(categories, counts) if n < SMALL_CATEGORY_CELLS}
        if few:
            small[name] = few
    if small:
        warnings.warn(
            f"Categories with fewer than {SMALL_CATEGORY_CELLS} training cells: {small}. "
            "The flow learns their conditional distribution from these cells alone, so "
            "cells generated for them are less reliable (check them with "
            "`scvi_cfgen.metrics.evaluate`); consider merging such categories.",
            UserWarning,
            stacklevel=6,
        )


def fit_latent_statistics(model, train_indices: np.ndarray) -> None:
    """Mean and standard deviation of the training cells' latents (the flow's standardisation)."""
    # sorted: moments do not depend on the order, and backed files read faster in row order
    mean, std = latent_moments(model, model.adata, np.sort(train_indices))
    model.module.statistics.fit_latent(mean, std)
