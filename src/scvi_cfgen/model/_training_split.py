"""The train/validation split of ``train``: scvi-tools' data splitter with CFGen's checks."""

from __future__ import annotations

import numpy as np
from scvi.dataloaders import DataSplitter
from scvi.model._utils import use_distributed_sampler

from ._schedule import DEFAULT_VALIDATION_FRACTION, default_validation_size


def check_registered_genes(model) -> None:
    """Refuse registered data whose genes are in another order than the model's."""
    if model._feature_orders(model.adata_manager.adata, "the registered data"):
        raise ValueError(
            "The registered data hold the model's genes in another order than it was "
            "trained with (e.g. after `load(dir, adata=...)` with reordered genes); training "
            "on them would scramble the weights. Register the cells in training order: "
            "`adata = adata[:, model.gene_names].copy()` before `setup_anndata`/`load`."
        )


def previous_split(model) -> list[np.ndarray] | None:
    """The train/validation/test indices of an earlier stage, if they fit the registered data."""
    indices = [getattr(model, f"{name}_indices", None) for name in ("train", "validation")]
    if indices[0] is None or model.adata is None:
        return None
    every = np.concatenate([np.asarray(i) for i in indices if i is not None])
    if every.size and every.max() >= model.adata.n_obs:
        return None
    test = getattr(model, "test_indices", None)
    return [np.asarray(i if i is not None else []) for i in (*indices, test)]


def training_split(
    model,
    train_size,
    validation_size,
    shuffle_set_split,
    load_sparse_tensor,
    batch_size,
    datasplitter_kwargs,
    datamodule,
    trainer_kwargs,
) -> DataSplitter:
    """The model's data splitter for ``train``'s split and loader arguments, set up."""
    if datamodule is not None:
        raise ValueError(
            "`datamodule` is not supported by CFGenModel yet; register an AnnData or MuData "
            "(backed h5ad works) with `setup_anndata`/`setup_mudata` instead."
        )
    if model.adata_manager is None:
        raise ValueError("This model has no registered AnnData; load it with `adata=...`.")
    check_registered_genes(model)
    if int(batch_size) != batch_size or batch_size < 2:
        raise ValueError("`batch_size` must be an integer of at least 2 (BatchNorm).")
    external = (datasplitter_kwargs or {}).get("external_indexing") is not None
    if train_size is None and validation_size is None and not external:
        fraction = default_validation_size(model.adata_manager.adata.n_obs)
        if fraction > DEFAULT_VALIDATION_FRACTION:  # small data: more validation cells
            train_size, validation_size = 1.0 - fraction, fraction
    splitter = model._data_splitter_cls(
        model.adata_manager,
        train_size=train_size,
        validation_size=validation_size,
        shuffle_set_split=shuffle_set_split,
        load_sparse_tensor=load_sparse_tensor,
        batch_size=int(batch_size),
        distributed_sampler=use_distributed_sampler(trainer_kwargs.get("strategy")),
        **{"drop_last": False, **(datasplitter_kwargs or {})},
    )
    splitter.setup()
    if len(splitter.train_idx) < 2:
        raise ValueError(
            f"The training split has {len(splitter.train_idx)} cell(s); CFGen needs at "
            "least 2. Use more cells or a larger `train_size`."
        )
    return splitter
