"""Two-attribute data for ``composition.py``: a batch effect with known truth, the held-out split.

- :func:`synthetic_with_effect`: the synthetic set of ``guidance_synthetic.py`` (batch ``b1``
  raises 10 known genes 8x);
- :func:`batch_effect_pbmc`: PBMC3k with a simulated batch effect made by binomial thinning;
- :func:`hold_out`: one (cell type, batch) combination out of training entirely, part of the
  same type's other batch out as a seen check, each halved into real and floor cells;
- :func:`effect_slope` and :func:`detectability`: how much of the batch effect cells carry, and
  how well real cells of one type are told apart by batch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

sys.path.insert(0, str(Path(__file__).parent))
from guidance_synthetic import BATCH_GENES
from guidance_synthetic import simulate as simulate_two_attributes
from quality import LABEL

import scvi_cfgen
from scvi_cfgen import metrics
from scvi_cfgen.metrics import PCAProjection, log_normalize

BATCH = "batch"
SEEN_FRACTION = 0.4


@dataclass(frozen=True)
class Case:
    """A two-attribute data set and the combination held out of training."""

    name: str
    cell_type: str
    held_batch: str
    seen_batch: str

    def load(self, seed: int) -> ad.AnnData:
        """The data set drawn with ``seed`` (the batch effect is in ``uns["batch_effect"]``)."""
        if self.name == "synthetic":
            return synthetic_with_effect(seed)
        return batch_effect_pbmc(seed)


CASES = {
    "synthetic": Case("synthetic", "type1", "b1", "b0"),
    "pbmc3k": Case("pbmc3k", "CD4 T", "b", "a"),
}


def synthetic_with_effect(seed: int) -> ad.AnnData:
    """The synthetic two-attribute set, with its batch genes and fold change in ``uns``."""
    adata = simulate_two_attributes(n_cells=3000, seed=seed)
    genes = np.arange(adata.n_vars)[BATCH_GENES]
    adata.uns["batch_effect"] = {"genes": genes, "lfc": np.full(len(genes), np.log(8.0))}
    return adata


def batch_effect_pbmc(
    seed: int, n_genes: int = 2000, fraction: float = 0.1, lfc_sd: float = 0.5
) -> ad.AnnData:
    """PBMC3k on its most variable genes with a simulated donor/batch effect.

    Cells are assigned to batch ``a`` or ``b`` at random (probability 1/2). A random
    ``fraction`` of the genes gets a log-fold change ``lfc ~ N(0, lfc_sd^2)`` of ``b`` over
    ``a``, made by binomial thinning, which keeps negative-binomial counts negative binomial
    (same dispersion, mean times the keep probability): a gene with ``lfc < 0`` is thinned in
    ``b`` with probability ``exp(lfc)``, a gene with ``lfc > 0`` is thinned in ``a`` with
    probability ``exp(-lfc)``. The genes and fold changes are kept in ``uns["batch_effect"]``.
    """
    import scanpy as sc

    adata = scvi_cfgen.datasets.pbmc3k()
    variable = sc.pp.highly_variable_genes(
        adata, n_top_genes=n_genes, flavor="seurat_v3", inplace=False
    )["highly_variable"].to_numpy()
    adata = adata[:, variable].copy()
    rng = np.random.default_rng(seed)
    in_b = rng.random(adata.n_obs) < 0.5
    genes = np.sort(rng.choice(adata.n_vars, size=round(fraction * adata.n_vars), replace=False))
    lfc = rng.normal(0.0, lfc_sd, size=len(genes))
    keep = np.ones((2, adata.n_vars))
    keep[1, genes] = np.exp(np.minimum(lfc, 0.0))
    keep[0, genes] = np.exp(-np.maximum(lfc, 0.0))
    counts = sp.csr_matrix(adata.X, dtype=np.int64)
    rows = np.repeat(in_b.astype(int), np.diff(counts.indptr))
    counts.data = rng.binomial(counts.data, keep[rows, counts.indices])
    counts.eliminate_zeros()
    adata.X = counts.astype(np.float32)
    adata.obs[BATCH] = pd.Categorical(np.where(in_b, "b", "a"))
    adata.uns["batch_effect"] = {"genes": genes, "lfc": lfc}
    return adata[np.asarray(counts.sum(axis=1)).ravel() > 0].copy()


@dataclass
class Split:
    """Training cells and, per held-out combination, the real and the floor halves."""

    train: ad.AnnData
    held: dict[str, tuple[ad.AnnData, ad.AnnData]]


def hold_out(adata: ad.AnnData, case: Case, seed: int) -> Split:
    """Remove (T, held batch) entirely and 40 % of (T, seen batch); halve both for the floor."""
    rng = np.random.default_rng(seed)
    is_type = (adata.obs[LABEL] == case.cell_type).to_numpy()
    unseen = np.flatnonzero(is_type & (adata.obs[BATCH] == case.held_batch).to_numpy())
    seen_pool = np.flatnonzero(is_type & (adata.obs[BATCH] == case.seen_batch).to_numpy())
    seen = rng.choice(seen_pool, size=round(SEEN_FRACTION * len(seen_pool)), replace=False)
    training = np.setdiff1d(np.arange(adata.n_obs), np.concatenate([unseen, seen]))
    held = {}
    for name, cells in (("unseen", unseen), ("seen", seen)):
        order = rng.permutation(cells)
        half = len(order) // 2
        held[name] = (adata[np.sort(order[:half])].copy(), adata[np.sort(order[half:])].copy())
    return Split(adata[training].copy(), held)


def effect_slope(cells: ad.AnnData, baseline: ad.AnnData, effect: dict) -> float:
    """Slope of the cells' log-fold change over ``baseline`` on the true one (affected genes)."""
    genes, lfc = np.asarray(effect["genes"]), np.asarray(effect["lfc"], dtype=float)

    def proportions(adata: ad.AnnData) -> np.ndarray:
        counts = sp.csr_matrix(adata.X, dtype=np.float64)
        totals = np.asarray(counts.sum(axis=1)).ravel()
        scaled = sp.diags(1.0 / np.maximum(totals, 1.0)) @ counts
        return np.asarray(scaled.mean(axis=0)).ravel()[genes]

    base = proportions(baseline)
    expressed = base > 2e-4
    observed = np.log((proportions(cells) + 1e-6) / (base + 1e-6))[expressed]
    true = lfc[expressed]
    return float(observed @ true / (true @ true))


def detectability(adata: ad.AnnData, split: Split, case: Case, seed: int) -> dict[str, float]:
    """How well real cells of type T are told apart by batch (AUC; 0.5 = not at all)."""
    is_type = (adata.obs[LABEL] == case.cell_type).to_numpy()
    cells = adata[is_type]
    in_held = (cells.obs[BATCH] == case.held_batch).to_numpy()
    embedding = PCAProjection(split.train, n_components=30, seed=seed).transform(cells)
    features = log_normalize(cells.X)
    scores = cross_val_predict(
        LogisticRegression(max_iter=2000, C=0.1),
        features,
        in_held,
        cv=5,
        method="predict_proba",
    )[:, 1]
    return {
        "n_seen_batch": int((~in_held).sum()),
        "n_held_batch": int(in_held.sum()),
        "c2st_auc_pcs": metrics.c2st_auc(embedding[~in_held], embedding[in_held], seed=seed),
        "logistic_auc_genes": float(roc_auc_score(in_held, scores)),
    }
