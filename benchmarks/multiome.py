"""Multiome generation benchmark: CFGen vs scvi-tools' MULTIVI as a generator (RNA + ATAC).

Usage::

    python benchmarks/multiome.py [--data pbmc10k_multiome.h5mu] [--outdir DIR] [--quick]

Data: ``--data`` is a paired multiome MuData (modalities ``--rna-mod`` with raw counts and
``--atac-mod`` with peak counts or 0/1, label column ``--label-key`` in ``mdata.obs`` or in the
RNA modality's ``obs``); ``--max-genes`` / ``--max-peaks`` keep the most expressed genes and the
most often accessible peaks (CPU budgets). Without ``--data`` the script simulates data with
:func:`scvi_cfgen.datasets.synthetic_multiome` (3,000 cells, 500 genes, 5,000 peaks, 5 cell types
with unequal proportions, type-specific genes and peaks and a continuous state shared by both
modalities). Nothing is ever downloaded.

Protocol: cells are split per cell type into a training set (60 %) and two held-out halves A and
B (20 % each). Both models are trained on the training set only, with the cell type as their
condition. For every cell type, each model generates as many cells as A holds; generated cells
are compared with A, and B is compared with A to give the *floor* (two real samples). Spaces are
fitted on the training cells (never on compared cells): RNA, counts normalised to 1e4 and log1p,
30 principal components; ATAC, TF-IDF of binarised peaks and a 30-component truncated SVD.
Distances per cell type, then averaged over types: unbiased MMD with an RBF kernel (sum of three
bandwidths: 0.5, 1 and 2 times the median distance within A for that type) and Wasserstein-2
(exact OT, POT). Also: Pearson r across (cell type, peak) pairs of the fraction of cells in which
each peak is accessible, and across (cell type, marker gene) pairs of mean log-normalised
expression of each type's 10 top marker genes (chosen on the training cells).

MULTIVI as a generator (documented choice): MULTIVI is trained with the cell type as a
categorical covariate (``categorical_covariate_keys``; its decoders are conditioned on it) and
otherwise scvi-tools' defaults (ZINB expression likelihood). To generate a cell of type ``k``,
``z ~ N(0, I)`` (its prior) is decoded with covariate ``k``; the RNA library (``libsize_expr``)
and ATAC cell factor (``libsize_acc``), which MULTIVI predicts per observed cell rather than
modelling generatively, are resampled jointly from its library encoders' outputs on training
cells of type ``k``. RNA counts are drawn from the ZINB; peaks from Bernoulli(p * libsize_acc *
sigmoid(region factors)), MULTIVI's own accessibility likelihood.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
import torch
from scipy.spatial.distance import cdist
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

import scvi_cfgen
from scvi_cfgen import metrics
from scvi_cfgen.metrics import (
    PCAProjection,
    TFIDFProjection,
    accessibility_correlation,
    marker_expression_correlation,
    marker_genes,
)

LABEL = "cell_type"


# ---------------------------------------------------------------------- data
def load_data(args) -> tuple[md.MuData, str]:
    if args.data is None:
        sizes = {"n_cells": 3000, "n_genes": 500, "n_peaks": 5000, "n_types": 5}
        if args.quick:
            sizes = {"n_cells": 900, "n_genes": 200, "n_peaks": 1500, "n_types": 3}
        mdata = scvi_cfgen.datasets.synthetic_multiome(
            **sizes,
            markers_per_type=10,
            peaks_per_type=sizes["n_peaks"] // 25,
            seed=args.seed,
        )
        description = (
            f"synthetic multiome (scvi_cfgen.datasets.synthetic_multiome, seed {args.seed}): "
            + ", ".join(f"{k} {v}" for k, v in sizes.items())
        )
        return mdata, description
    mdata = md.read_h5mu(args.data)
    rna, atac = mdata[args.rna_mod], mdata[args.atac_mod]
    cells = rna.obs_names.intersection(atac.obs_names)
    labels = mdata.obs[args.label_key] if args.label_key in mdata.obs else rna.obs[args.label_key]
    labels = labels.reindex(cells)
    cells = cells[labels.notna().to_numpy()]
    rna, atac = rna[cells], atac[cells]
    if args.max_genes and rna.n_vars > args.max_genes:
        totals = np.asarray(rna.X.sum(axis=0)).ravel()
        rna = rna[:, np.sort(np.argsort(-totals)[: args.max_genes])]
    if args.max_peaks and atac.n_vars > args.max_peaks:
        accessible = np.asarray((atac.X > 0).sum(axis=0)).ravel()
        atac = atac[:, np.sort(np.argsort(-accessible)[: args.max_peaks])]
    rna, atac = rna.copy(), atac.copy()
    keep = np.asarray(rna.X.sum(axis=1)).ravel() > 0
    rna, atac = rna[keep].copy(), atac[keep].copy()
    mdata = md.MuData({"rna": rna, "atac": atac})
    mdata.obs[LABEL] = pd.Categorical(labels.reindex(mdata.obs_names).astype(str))
    return mdata, f"{args.data}: {mdata.n_obs} cells, {rna.n_vars} genes, {atac.n_vars} peaks"


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, held_a, held_b = [], [], []
    for label in np.unique(labels):
        cells = rng.permutation(np.flatnonzero(labels == label))
        n_train, n_half = int(0.6 * len(cells)), int(0.2 * len(cells))
        train.append(cells[:n_train])
        held_a.append(cells[n_train : n_train + n_half])
        held_b.append(cells[n_train + n_half : n_train + 2 * n_half])
    return tuple(np.sort(np.concatenate(part)) for part in (train, held_a, held_b))


def subset(mdata: md.MuData, cells: np.ndarray) -> md.MuData:
    names = mdata.obs_names[cells]
    out = md.MuData({"rna": mdata["rna"][names].copy(), "atac": mdata["atac"][names].copy()})
    out.obs[LABEL] = mdata.obs[LABEL].loc[names].to_numpy()
    out.obs[LABEL] = out.obs[LABEL].astype("category")
    return out


# ---------------------------------------------------------------------- distances
def mmd_unbiased(x: np.ndarray, y: np.ndarray, scale: float) -> float:
    """Unbiased MMD summed over RBF kernels of bandwidth 0.5, 1 and 2 x ``scale``."""
    return sum(
        metrics.rbf_mmd(x, y, gammas=[1.0 / (2 * (factor * scale) ** 2)])
        for factor in (0.5, 1.0, 2.0)
    )


def distances(reference, reference_labels, other, other_labels) -> dict[str, float]:
    mmd, w2 = [], []
    for label in np.unique(reference_labels):
        x, y = reference[reference_labels == label], other[other_labels == label]
        if len(x) < 10 or len(y) < 10:
            continue
        scale = float(np.median(cdist(x, x)[np.triu_indices(len(x), 1)]))
        mmd.append(mmd_unbiased(x, y, scale))
        w2.append(metrics.wasserstein2(x, y))
    return {"mmd": float(np.mean(mmd)), "w2": float(np.mean(w2))}


# ---------------------------------------------------------------------- generators
def train_cfgen(train: md.MuData, args) -> scvi_cfgen.CFGenModel:
    scvi_cfgen.CFGenModel.setup_mudata(
        train,
        categorical_covariate_keys=[LABEL],
        modalities={"rna_layer": "rna", "atac_layer": "atac"},
    )
    model = scvi_cfgen.CFGenModel(train)
    model.train(
        max_epochs={"autoencoder": args.max_epochs_autoencoder, "flow": args.max_epochs_flow},
        enable_progress_bar=False,
    )
    return model


def generate_cfgen(model, labels: pd.Series, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    generated = model.generate(conditions=labels.to_frame(LABEL), seed=seed, progress_bar=False)
    return generated["rna"].X, generated["atac"].X


def train_multivi(train: md.MuData, args) -> scvi.model.MULTIVI:
    scvi.model.MULTIVI.setup_mudata(
        train,
        categorical_covariate_keys=[LABEL],
        modalities={"rna_layer": "rna", "atac_layer": "atac"},
    )
    model = scvi.model.MULTIVI(train)
    model.train(max_epochs=args.max_epochs_multivi, early_stopping=True)
    return model


@torch.inference_mode()
def generate_multivi(
    model, train: md.MuData, labels: pd.Series, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    module = model.module.eval()
    cat_key = scvi.REGISTRY_KEYS.CAT_COVS_KEY
    libraries, codes = [], []
    for tensors in model._make_data_loader(adata=train, batch_size=512):
        outputs = module.inference(**module._get_inference_input(tensors))
        libraries.append(torch.cat([outputs["libsize_expr"], outputs["libsize_acc"]], dim=1))
        codes.append(tensors[cat_key][:, 0].long())
    libraries, codes = torch.cat(libraries), torch.cat(codes)
    mapping = model.adata_manager.get_state_registry(cat_key)["mappings"][LABEL]
    wanted = torch.as_tensor(pd.Index(mapping).get_indexer(labels.astype(str)))
    generator = torch.Generator().manual_seed(seed)
    rows = torch.empty(len(wanted), dtype=torch.long)
    for code in wanted.unique():
        own = torch.nonzero(codes == code).flatten()
        where = torch.nonzero(wanted == code).flatten()
        rows[where] = own[torch.randint(len(own), (len(where),), generator=generator)]
    torch.manual_seed(seed)
    z = torch.randn(len(wanted), module.n_latent)
    outputs = module.generative(
        z=z,
        qz_m=z,
        batch_index=torch.zeros(len(wanted), 1, dtype=torch.long),
        cat_covs=wanted[:, None].long(),
        libsize_expr=libraries[rows, :1],
        label=torch.zeros(len(wanted), 1, dtype=torch.long),
    )
    if module.gene_likelihood == "zinb":
        rna = ZeroInflatedNegativeBinomial(
            mu=outputs["px_rate"], theta=outputs["px_r"], zi_logits=outputs["px_dropout"]
        ).sample()
    else:
        rna = NegativeBinomial(mu=outputs["px_rate"], theta=outputs["px_r"]).sample()
    factors = torch.sigmoid(module.region_factors) if module.region_factors is not None else 1
    probability = (outputs["p"] * libraries[rows, 1:] * factors).clamp(0, 1)
    peaks = torch.bernoulli(probability, generator=generator)
    return (
        sp.csr_matrix(rna.numpy().astype(np.int32)),
        sp.csr_matrix(peaks.numpy().astype(np.uint8)),
    )


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--rna-mod", default="rna")
    parser.add_argument("--atac-mod", default="atac")
    parser.add_argument("--label-key", default="cell_type")
    parser.add_argument("--max-genes", type=int, default=2000)
    parser.add_argument("--max-peaks", type=int, default=20000)
    # CFGen's caps; None leaves the stage to the package's budget (optimiser steps, early stop).
    parser.add_argument("--max-epochs-autoencoder", type=int, default=None)
    parser.add_argument("--max-epochs-flow", type=int, default=None)
    parser.add_argument("--max-epochs-multivi", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--outdir", type=Path, default=Path("benchmark_output/multiome"))
    args = parser.parse_args()
    if args.quick:
        args.max_epochs_autoencoder, args.max_epochs_flow, args.max_epochs_multivi = 5, 5, 5
    args.outdir.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = args.seed

    mdata, description = load_data(args)
    labels = mdata.obs[LABEL].astype(str).to_numpy()
    train_idx, a_idx, b_idx = split(labels, args.seed)
    train, held_a, held_b = (subset(mdata, idx) for idx in (train_idx, a_idx, b_idx))
    a_labels = held_a.obs[LABEL].astype(str).to_numpy()
    print(description)
    print(f"train {train.n_obs}, held-out A {held_a.n_obs}, B {held_b.n_obs} cells")

    rna_space = PCAProjection(train["rna"].X, n_components=30, seed=args.seed)
    atac_space = TFIDFProjection(train["atac"].X, n_components=30, seed=args.seed)
    markers = marker_genes(train["rna"].X, train.obs[LABEL].astype(str), n_markers=10)
    real_rna, real_atac = (
        rna_space.transform(held_a["rna"].X),
        atac_space.transform(held_a["atac"].X),
    )

    def score(rna, atac, gen_labels) -> dict[str, float]:
        rna_d = distances(real_rna, a_labels, rna_space.transform(rna), gen_labels)
        atac_d = distances(real_atac, a_labels, atac_space.transform(atac), gen_labels)
        return {
            "rna_mmd": rna_d["mmd"],
            "rna_w2": rna_d["w2"],
            "atac_mmd": atac_d["mmd"],
            "atac_w2": atac_d["w2"],
            "accessibility_r": float(
                accessibility_correlation(held_a["atac"].X, a_labels, atac, gen_labels)["overall"]
            ),
            "marker_r": float(
                marker_expression_correlation(
                    held_a["rna"].X, a_labels, rna, gen_labels, markers=markers
                )["overall"]
            ),
        }

    results = {"data": description, "n_train": int(train.n_obs), "n_compared": int(held_a.n_obs)}
    b_labels = held_b.obs[LABEL].astype(str).to_numpy()
    results["real floor (B vs A)"] = score(held_b["rna"].X, held_b["atac"].X, b_labels)
    want = pd.Series(a_labels, name=LABEL)
    for name, trainer, generator in [
        ("CFGen", train_cfgen, lambda m, data: generate_cfgen(m, want, args.seed)),
        ("MULTIVI", train_multivi, lambda m, data: generate_multivi(m, data, want, args.seed)),
    ]:
        data = subset(mdata, train_idx)  # each model registers its own copy
        start = time.time()
        model = trainer(data, args)
        train_seconds = time.time() - start
        start = time.time()
        rna, atac = generator(model, data)
        generate_seconds = time.time() - start
        results[name] = {
            **score(rna, atac, a_labels),
            "train_seconds": train_seconds,
            "generate_seconds": generate_seconds,
            "epochs": {k: len(v) for k, v in model.history.items() if k.startswith("train_loss")},
        }
        print(name, json.dumps(results[name], indent=1))
    (args.outdir / "results.json").write_text(json.dumps(results, indent=1))
    rows = ["rna_mmd", "rna_w2", "atac_mmd", "atac_w2", "accessibility_r", "marker_r"]
    columns = ["CFGen", "MULTIVI", "real floor (B vs A)"]
    print("| metric | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{results[c][row]:.4g}" for c in columns) + " |")


if __name__ == "__main__":
    main()
