"""A small synthetic multiome (RNA + ATAC) simulator with known cell-type structure."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp


def synthetic_multiome(
    n_cells: int = 1200,
    n_genes: int = 200,
    n_peaks: int = 2000,
    n_types: int = 4,
    markers_per_type: int = 10,
    peaks_per_type: int = 100,
    seed: int = 0,
) -> md.MuData:
    """Simulate paired RNA counts and ATAC peak counts with cell-type-specific features.

    Cell types ``type0 .. type{n_types-1}`` have unequal proportions (weights ``n_types, ...,
    1``). Each cell also has a continuous state ``s`` in [0, 1] shared by both modalities, so the
    modalities are coupled within a type as well as through it.

    - **RNA**: gene means from a Gamma(2, 0.5) baseline; each type raises its own
      ``markers_per_type`` genes (``5 * i ..``) 15-fold; the next ``markers_per_type`` genes
      scale with ``exp(2 (s - 0.5))``. Library sizes are log-normal (median 1,500, s.d. 0.4 on
      the log scale); counts are negative binomial (inverse dispersion 5).
    - **ATAC**: baseline accessibility per peak from Beta(1, 30) (about 3 %); each type opens its
      own ``peaks_per_type`` peaks with probability from Beta(8, 10) (about 45 %); the next
      ``peaks_per_type`` peaks open with probability ``0.05 + 0.5 s``; a per-cell depth factor
      (log-normal, s.d. 0.3) scales every probability (capped at 0.95). Accessible peaks carry
      ``1 + Poisson(0.3)`` fragments, so the matrix holds peak *counts* as from a peak caller
      (binarised by :class:`~scvi_cfgen.CFGenModel`).

    Parameters
    ----------
    n_cells, n_genes, n_peaks
        Sizes of the data set.
    n_types
        Number of cell types.
    markers_per_type, peaks_per_type
        Type-specific genes and peaks per type.
    seed
        Random seed.

    Returns
    -------
    MuData with modalities ``"rna"`` (CSR float32 integer counts) and ``"atac"`` (CSR float32
    peak counts); ``obs['cell_type']`` (categorical) and ``obs['state']`` on the MuData and on
    each modality; ``uns['type_peaks']`` / ``uns['type_markers']``: each type's feature indices.
    """
    if (n_types + 1) * markers_per_type > n_genes or (n_types + 1) * peaks_per_type > n_peaks:
        raise ValueError("Too few genes or peaks for the requested type-specific features.")
    rng = np.random.default_rng(seed)
    weights = np.arange(n_types, 0, -1, dtype=float)
    types = rng.choice(n_types, size=n_cells, p=weights / weights.sum())
    state = rng.random(n_cells)
    labels = pd.Categorical.from_codes(types, categories=[f"type{i}" for i in range(n_types)])

    base = rng.gamma(2.0, 0.5, size=n_genes)
    means = np.tile(base, (n_cells, 1))
    markers = {
        i: np.arange(i * markers_per_type, (i + 1) * markers_per_type) for i in range(n_types)
    }
    for i, genes in markers.items():
        means[np.ix_(types == i, genes)] *= 15.0
    gradient_genes = np.arange(n_types * markers_per_type, (n_types + 1) * markers_per_type)
    means[:, gradient_genes] *= np.exp(2.0 * (state[:, None] - 0.5))
    library = rng.lognormal(np.log(1500.0), 0.4, size=n_cells)
    means = means / means.sum(axis=1, keepdims=True) * library[:, None]
    theta = 5.0
    rna = rng.poisson(rng.gamma(theta, means / theta)).astype(np.float32)
    rna[rna.sum(axis=1) == 0, 0] = 1.0  # no empty cells

    probability = np.tile(rng.beta(1.0, 30.0, size=n_peaks), (n_cells, 1))
    type_peaks = {
        i: np.arange(i * peaks_per_type, (i + 1) * peaks_per_type) for i in range(n_types)
    }
    for i, peaks in type_peaks.items():
        probability[np.ix_(types == i, peaks)] = rng.beta(8.0, 10.0, size=peaks_per_type)
    gradient_peaks = np.arange(n_types * peaks_per_type, (n_types + 1) * peaks_per_type)
    probability[:, gradient_peaks] = 0.05 + 0.5 * state[:, None]
    depth = rng.lognormal(0.0, 0.3, size=n_cells)
    probability = np.minimum(probability * depth[:, None], 0.95)
    accessible = rng.random(probability.shape) < probability
    atac = sp.csr_matrix(
        accessible * (1 + rng.poisson(0.3, size=probability.shape)), dtype=np.float32
    )

    obs = pd.DataFrame(
        {"cell_type": labels, "state": state}, index=[f"cell{i}" for i in range(n_cells)]
    )
    mods = {
        "rna": ad.AnnData(
            sp.csr_matrix(rna),
            obs=obs.copy(),
            var=pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)]),
        ),
        "atac": ad.AnnData(
            atac, obs=obs.copy(), var=pd.DataFrame(index=[f"peak{j}" for j in range(n_peaks)])
        ),
    }
    mdata = md.MuData(mods)
    mdata.obs["cell_type"] = obs["cell_type"]
    mdata.obs["state"] = obs["state"]
    mdata.uns["type_peaks"] = {f"type{i}": p.tolist() for i, p in type_peaks.items()}
    mdata.uns["type_markers"] = {f"type{i}": g.tolist() for i, g in markers.items()}
    return mdata
