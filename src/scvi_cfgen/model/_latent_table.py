"""The flow stage's data: every cell encoded once by the frozen encoder, in a small AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, NumericalJointObsField, NumericalObsField
from scvi.dataloaders import DataSplitter

from scvi_cfgen._constants import (
    ATAC_X_KEY,
    CAT_COVS_KEY,
    LATENT_KEY,
    LOG_LIBRARY_KEY,
    SEED_TOTAL_KEY,
    X_KEY,
)
from scvi_cfgen._validation import row_sums

from ._clusters import attribute_codes
from ._model_state import encoded_batches

#: Cells encoded per forward pass when the latent table is built.
ENCODING_BATCH_SIZE = 1024


def latent_table(model) -> AnnDataManager:
    """Standardised latents, attribute codes and library sizes of every registered cell.

    The attribute codes are the registered ones, then the clusters (``cluster_resolution``).

    The encoder is frozen during the flow stage, so each cell's latent is fixed: encoding the
    cells once replaces an encoder pass per cell per flow epoch. The table holds ``n_cells x
    n_latent`` floats (200 MB for a million cells at 50 dimensions), whatever the number of genes;
    it is filled minibatch by minibatch, and the counts are read in chunks of rows.
    """
    manager = model.adata_manager
    n_cells = manager.adata.n_obs
    latents = np.empty((n_cells, model.module.n_latent), dtype=np.float32)
    start = 0
    with torch.random.fork_rng(devices=[]):  # iterating a data loader draws from the RNG
        for latent in encoded_batches(model, model.adata, None, ENCODING_BATCH_SIZE):
            with torch.inference_mode():
                standardized = model.module.standardize_latent(latent.to(model.device))
            latents[start : start + latent.shape[0]] = standardized.cpu().numpy()
            start += latent.shape[0]
    counts_key = X_KEY if model.has_rna else ATAC_X_KEY
    totals = row_sums(manager.get_from_registry(counts_key))
    return table_manager(latents, totals, attribute_codes(model), manager.adata.obs_names)


def table_manager(
    latents: np.ndarray, totals: np.ndarray, codes: np.ndarray | None, cell_names=None
) -> AnnDataManager:
    """The registered latent table of standardised ``latents``, total counts and codes."""
    obs = pd.DataFrame(
        {
            # RNA size factor for the flow's condition; unused by an ATAC-only model
            LOG_LIBRARY_KEY: np.log(np.maximum(totals, 1.0)),
            # seeds validation draws as the count minibatches did
            SEED_TOTAL_KEY: totals,
        },
        index=cell_names,
    )
    code_columns = []
    for index in range(0 if codes is None else codes.shape[1]):
        column = f"code_{index}"
        obs[column] = codes[:, index].astype(np.float32)
        code_columns.append(column)
    table = ad.AnnData(X=latents, obs=obs)
    fields = [
        LayerField(LATENT_KEY, None, is_count_data=False),
        NumericalObsField(LOG_LIBRARY_KEY, LOG_LIBRARY_KEY),
        NumericalObsField(SEED_TOTAL_KEY, SEED_TOTAL_KEY),
        NumericalJointObsField(CAT_COVS_KEY, code_columns or None),
    ]
    manager = AnnDataManager(fields=fields)
    manager.register_fields(table)
    return manager


def latent_splitter(model, splitter: DataSplitter) -> DataSplitter:
    """A data splitter over the latent table with exactly the cells of ``splitter``'s split."""
    manager = latent_table(model)
    test = getattr(splitter, "test_idx", None)
    indices = [
        np.asarray(splitter.train_idx),
        np.asarray(splitter.val_idx),
        np.asarray([] if test is None else test, dtype=np.int64),
    ]
    latent = DataSplitter(
        manager,
        shuffle_set_split=False,
        external_indexing=indices,
        **splitter.data_loader_kwargs,
    )
    latent.setup()
    return latent
