"""The train/validation split of ``train``: scvi-tools' data splitter with CFGen's checks."""

from __future__ import annotations

import numpy as np
from scvi.dataloaders import DataSplitter
from scvi.model._utils import use_distributed_sampler

from ._datamodule import DataModuleAdapter
from ._datamodule_passes import (
    count_training_batches,
    fit_streamed_data_statistics,
    fit_streamed_latent_statistics,
    streamed_latent_splitter,
)
from ._latent_table import latent_splitter
from ._schedule import DEFAULT_VALIDATION_FRACTION, default_validation_size, steps_per_epoch
from ._training_statistics import fit_data_statistics, fit_latent_statistics

#: ``train``'s default ``batch_size``; another value is passed on to a data module that can
#: change its batch size.
DEFAULT_BATCH_SIZE = 256


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
    """The model's data splitter for ``train``'s split and loader arguments, set up.

    With a ``datamodule``, the :class:`DataModuleAdapter` that trains from it instead.
    """
    if datamodule is not None:
        return datamodule_split(
            model, datamodule, train_size, validation_size, batch_size, datasplitter_kwargs
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


def datamodule_split(
    model, datamodule, train_size, validation_size, batch_size, datasplitter_kwargs
) -> DataModuleAdapter:
    """The adapter that trains ``model`` from a scvi-tools data module, after CFGen's checks."""
    if model.modality_names is not None:
        raise ValueError(
            "Training from a data module works for RNA models (`setup_anndata` or "
            "`CFGenModel.registry_from_datamodule`); this model was set up with a MuData."
        )
    if model.cluster_resolution is not None:
        raise ValueError(
            "`cluster_resolution` clusters the latents of registered AnnData cells, which a "
            "data module does not have; register the cells' labels as attributes instead "
            "(`registry_from_datamodule(..., attributes=[...])`)."
        )
    if datasplitter_kwargs:
        raise ValueError(
            "`datasplitter_kwargs` configure scvi's DataSplitter, which a data module replaces; "
            "set the split and loaders on the data module."
        )
    split_given = train_size is not None or validation_size is not None
    if hasattr(datamodule, "set_split"):  # e.g. AnnbatchDataModule: scvi-tools forwards these
        if split_given:
            datamodule.set_split(train_size=train_size, validation_size=validation_size)
    elif split_given:
        raise ValueError(
            f"{type(datamodule).__name__} draws its own train/validation split: pass "
            "`train_size` (and `split_seed`) to the data module, not to `train`."
        )
    if batch_size != DEFAULT_BATCH_SIZE:
        if not hasattr(datamodule, "set_batch_size"):
            raise ValueError(
                f"{type(datamodule).__name__} sets its own minibatch size: pass `batch_size` "
                "to the data module, not to `train`."
            )
        datamodule.set_batch_size(int(batch_size))
    return DataModuleAdapter(datamodule, model.attribute_categories, list(model.gene_names))


def is_streamed(data) -> bool:
    """Whether ``data`` is a data module's adapter (cells streamed) rather than a splitter."""
    return isinstance(data, DataModuleAdapter)


def fit_split_data_statistics(model, data) -> None:
    """Attribute frequencies and size-factor laws of the split's training cells."""
    if is_streamed(data):
        fit_streamed_data_statistics(model, data)
    else:
        fit_data_statistics(model, np.asarray(data.train_idx))


def fit_split_latent_statistics(model, data) -> None:
    """Mean and standard deviation of the latents of the split's training cells."""
    if is_streamed(data):
        fit_streamed_latent_statistics(model, data)
    else:
        fit_latent_statistics(model, np.asarray(data.train_idx))


def flow_table_split(model, data) -> DataSplitter:
    """The flow stage's latent table, split as ``data``."""
    if is_streamed(data):
        return streamed_latent_splitter(model, data)
    return latent_splitter(model, data)


def split_sizes(data) -> tuple[int, int]:
    """Optimiser steps per epoch over the split's training cells, and its validation cells.

    For a data module only whether there are validation cells is known without a pass
    (``1`` stands for "some").
    """
    if is_streamed(data):
        if data.n_train_batches is None:
            count_training_batches(data)
        n_val = data.split_size("validation")
        return data.n_train_batches, int(data.has_validation()) if n_val is None else n_val
    return steps_per_epoch(len(data.train_idx), data.data_loader_kwargs["batch_size"]), data.n_val
