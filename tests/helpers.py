"""Small synthetic data and model sizes shared by the tests."""

from pathlib import Path

import anndata as ad
import lightning.pytorch as pl
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

import scvi_cfgen

TINY = {"n_latent": 8, "n_hidden": (32,), "flow_hidden_dim": 32, "flow_condition_dim": 16}


def make_marker_counts(
    n_cells: int = 240,
    n_genes: int = 40,
    seed: int = 0,
    n_types: int = 3,
    batch_marker_fold: float = 1.0,
) -> ad.AnnData:
    """NB counts where each cell type has 5 marker genes with 20x higher expression.

    With ``batch_marker_fold > 1``, cells of batch ``b1`` also have genes 30-34 raised by that
    factor (a batch signature independent of the cell type).
    """
    rng = np.random.default_rng(seed)
    types = np.array([f"type{i}" for i in range(n_types)])[np.arange(n_cells) % n_types]
    batch = np.where(rng.random(n_cells) < 0.5, "b0", "b1")
    base = rng.gamma(2.0, 0.5, size=n_genes)
    means = np.tile(base, (n_cells, 1))
    for i in range(n_types):
        means[types == f"type{i}", 5 * i : 5 * i + 5] *= 20
    means[batch == "b1", 30:35] *= batch_marker_fold
    library = rng.lognormal(np.log(200), 0.3, size=n_cells)
    means = means / means.sum(axis=1, keepdims=True) * library[:, None]
    theta = 5.0
    counts = rng.poisson(rng.gamma(theta, means / theta))
    counts[:, -1] += 1  # no empty cells
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(types), "batch": pd.Categorical(batch)},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)


MULTIOME = {"rna_layer": "rna", "atac_layer": "atac"}
TINY_MULTIOME = {**TINY, "n_hidden_atac": (64,), "flow_hidden_dim": 64}


def small_multiome(n_cells: int = 600, seed: int = 0) -> md.MuData:
    return scvi_cfgen.datasets.synthetic_multiome(
        n_cells=n_cells,
        n_genes=100,
        n_peaks=400,
        n_types=3,
        markers_per_type=8,
        peaks_per_type=40,
        seed=seed,
    )


def train_tiny_flow(adata: ad.AnnData, flow_epochs: int, **flow_plan_kwargs):
    """A TINY model on registered ``adata``, seed 0, 2 autoencoder epochs, fixed flow epochs."""
    import scvi

    scvi.settings.seed = 0
    model = scvi_cfgen.CFGenModel(adata, **TINY)
    model.train(
        max_epochs={"autoencoder": 2, "flow": flow_epochs},
        batch_size=32,
        early_stopping=False,
        enable_progress_bar=False,
        plan_kwargs={"flow": flow_plan_kwargs},
    )
    return model


class StepCounter(pl.Callback):
    """Writes each process's optimiser steps and batches per epoch when a stage ends.

    Lives here (an importable module) so that spawned DDP processes can unpickle it.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def on_train_end(self, trainer, pl_module):
        with open(self.directory / f"rank{trainer.global_rank}.txt", "a") as file:
            file.write(f"{trainer.global_step} {trainer.num_training_batches}\n")
