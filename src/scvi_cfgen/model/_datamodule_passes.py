"""The passes over a data module's cells that CFGen's training needs, streamed minibatch-wise.

Each reads the data module's loaders once and keeps no count matrix: the statistics pass keeps
two numbers per training cell (its codes and total count), the latent moments a running sum,
and the flow's latent table ``n_latent`` floats per cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scvi.dataloaders import DataSplitter

from scvi_cfgen._constants import CAT_COVS_KEY, X_KEY
from scvi_cfgen._validation import validate_counts

from ._datamodule import DataModuleAdapter
from ._latent_table import table_manager
from ._model_state import RunningMoments
from ._training_statistics import fit_cell_statistics


class StreamedTableSplitter(DataSplitter):
    """scvi's splitter over a latent table built from a data module.

    A class of its own name: scvi's ``TrainRunner`` checks the split of a ``DataSplitter``
    against ``model.adata``, which a model trained from a data module does not have.
    """


def _checked_counts(batch: dict, split: str, number: int) -> torch.Tensor:
    """The minibatch's counts, after the raw-count checks of ``setup_anndata``."""
    counts = batch[X_KEY]
    validate_counts(
        counts.numpy(),
        f"The data module's counts ({split} minibatch {number})",
        layer_argument="layer_name",
    )
    return counts


def fit_streamed_data_statistics(model, adapter: DataModuleAdapter) -> None:
    """Attribute frequencies and size-factor laws of the data module's training cells.

    One pass over the training loader; also records the split's size on ``adapter`` and checks
    every minibatch's counts, so bad data stop training before it starts.
    """
    codes, libraries, sizes = [], [], []
    with torch.random.fork_rng(devices=[]):  # a shuffling loader draws from the RNG
        for number, batch in enumerate(adapter.batches("train")):
            counts = _checked_counts(batch, "training", number)
            libraries.append(counts.sum(dim=1).double())
            codes.append(batch[CAT_COVS_KEY])
            sizes.append(counts.shape[0])
    n_train = sum(sizes)
    if n_train < 2:
        raise ValueError(
            f"The data module's training split has {n_train} cell(s); CFGen needs at least 2. "
            "Use a larger query or `train_size`."
        )
    if min(sizes) < 2:
        raise ValueError(
            f"The data module yields a training minibatch of {min(sizes)} cell; the encoder's "
            f"BatchNorm needs at least 2. Change the data module's `batch_size` (now "
            f"{max(sizes)}) or `train_size` so that the {n_train} training cells do not leave "
            "one cell over."
        )
    adapter.n_train, adapter.n_train_batches, adapter.batch_size = n_train, len(sizes), max(sizes)
    fit_cell_statistics(model, torch.cat(codes), torch.cat(libraries))


def _encoded(model, counts: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.module.encode(counts.to(model.device), None).cpu()


def fit_streamed_latent_statistics(model, adapter: DataModuleAdapter) -> None:
    """Mean and standard deviation of the training cells' latents, in one pass."""
    model.module.eval()
    moments = RunningMoments()
    with torch.random.fork_rng(devices=[]):
        for batch in adapter.batches("train"):
            moments.add(_encoded(model, batch[X_KEY]))
    model.module.statistics.fit_latent(*moments.result())


def streamed_latent_splitter(model, adapter: DataModuleAdapter) -> DataSplitter:
    """The flow stage's data: the latent table of the module's training and validation cells.

    One pass over each loader with the frozen encoder; the training cells fill the table's first
    rows and the validation cells the rest, and the returned splitter keeps them apart.
    """
    model.module.eval()
    sizes = {split: adapter.split_size(split) for split in ("train", "validation")}
    if None in sizes.values():  # sizes unknown until read: a first pass to count the cells
        sizes = {s: sum(b[X_KEY].shape[0] for b in adapter.batches(s)) for s in sizes}
    n_train, n_val = sizes["train"], sizes["validation"]
    latents = np.empty((n_train + n_val, model.module.n_latent), dtype=np.float32)
    totals = np.empty(n_train + n_val, dtype=np.float64)
    codes = np.empty((n_train + n_val, len(model.attribute_categories)), dtype=np.int64)
    start, largest = 0, 0
    with torch.random.fork_rng(devices=[]):  # a shuffling loader draws from the RNG
        for split in ("train", "validation"):
            end = start + sizes[split]
            for batch in adapter.batches(split):
                counts = batch[X_KEY]
                stop, largest = start + counts.shape[0], max(largest, counts.shape[0])
                if stop > end:
                    raise ValueError(
                        f"The data module's {split} loader yields more than the "
                        f"{sizes[split]} cells it announced; the latent table cannot be built."
                    )
                with torch.inference_mode():
                    latent = model.module.encode_standardized(counts.to(model.device), None)
                latents[start:stop] = latent.cpu().numpy()
                totals[start:stop] = counts.sum(dim=1).double().numpy()
                codes[start:stop] = batch[CAT_COVS_KEY].numpy()
                start = stop
            if start != end:
                raise ValueError(
                    f"The data module's {split} loader yielded {start - end + sizes[split]} "
                    f"cells, not the {sizes[split]} it announced."
                )
    cell_names = pd.Index(np.arange(n_train + n_val).astype(str))  # table rows, not cells' names
    manager = table_manager(
        latents, totals, codes if model.attribute_categories else None, cell_names
    )
    splitter = StreamedTableSplitter(
        manager,
        shuffle_set_split=False,
        external_indexing=[
            np.arange(n_train),
            np.arange(n_train, n_train + n_val),
            np.array([], dtype=np.int64),
        ],
        batch_size=adapter.batch_size or largest,
        drop_last=False,
    )
    splitter.setup()
    return splitter


def count_training_batches(adapter: DataModuleAdapter) -> None:
    """Record the training split's cells, minibatches and batch size on ``adapter`` (one pass)."""
    sizes = [batch[X_KEY].shape[0] for batch in adapter.batches("train")]
    adapter.n_train, adapter.n_train_batches = sum(sizes), len(sizes)
    adapter.batch_size = max(sizes)
