"""Compositional guidance, transfer and augmentation on synthetic two-attribute counts.

Cells have a type (3 types, each with 10 marker genes raised 20x) and a batch (cells of batch
``b1`` have 10 other genes raised 8x, whatever their type), so the expected markers of every
combination are known. A CFGen model is trained with package defaults (smaller networks, as the
data have 200 genes) and we measure:

- the fraction of cells generated for (type1, b1) that carry both signatures, on a grid of guidance
  weights for the two attributes (the paper's figure 4 as numbers and a heatmap);
- that all-zero weights give the unconditional field exactly;
- transfer of b0 cells to b1: a batch classifier and a type classifier, both trained on real
  cells, read the moved cells; and the round-trip error when transferring to the cells' own batch;
- augmentation: category probabilities of the inverse-frequency rule.

Run: ``python benchmarks/guidance_synthetic.py [outdir]``; writes ``guidance.json`` and
``guidance_grid.png``.
"""

import json
import sys
import time
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
import torch
from sklearn.linear_model import LogisticRegression

import scvi_cfgen
from scvi_cfgen.metrics import PCAProjection

matplotlib.use("Agg")
import matplotlib.pyplot as plt

N_GENES, N_MARKERS = 200, 10
TYPE_GENES = {f"type{i}": slice(N_MARKERS * i, N_MARKERS * (i + 1)) for i in range(3)}
BATCH_GENES = slice(100, 100 + N_MARKERS)
WEIGHTS = [0.0, 0.5, 1.0, 2.0, 3.0]


def simulate(n_cells: int = 3000, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    types = rng.choice(["type0", "type1", "type2"], size=n_cells, p=[0.5, 0.35, 0.15])
    batches = rng.choice(["b0", "b1"], size=n_cells, p=[0.6, 0.4])
    means = np.tile(rng.gamma(2.0, 0.5, size=N_GENES), (n_cells, 1))
    for name, genes in TYPE_GENES.items():
        means[types == name, genes] *= 20
    means[batches == "b1", BATCH_GENES] *= 8
    library = rng.lognormal(np.log(1500), 0.4, size=n_cells)
    means *= (library / means.sum(axis=1))[:, None]
    counts = rng.poisson(rng.gamma(5.0, means / 5.0)).astype(np.float32)
    counts[:, -1] += 1
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(types), "batch": pd.Categorical(batches)},
        index=[f"c{i}" for i in range(n_cells)],
    )
    return ad.AnnData(
        sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)])
    )


def signature_share(cells: ad.AnnData, genes: slice) -> np.ndarray:
    X = cells.X.toarray().astype(float)
    return X[:, genes].sum(axis=1) / X.sum(axis=1)


def thresholds(real: ad.AnnData) -> tuple[float, float]:
    type1 = (real.obs["cell_type"] == "type1").to_numpy()
    b1 = (real.obs["batch"] == "b1").to_numpy()
    type_share, batch_share = (
        signature_share(real, TYPE_GENES["type1"]),
        signature_share(real, BATCH_GENES),
    )
    return (
        (np.median(type_share[type1]) + np.median(type_share[~type1])) / 2,
        (np.median(batch_share[b1]) + np.median(batch_share[~b1])) / 2,
    )


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = 0
    adata = simulate()
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type", "batch"])
    model = scvi_cfgen.CFGenModel(adata, n_latent=16, n_hidden=(128, 64), flow_hidden_dim=256)
    start = time.time()
    model.train(enable_progress_bar=False)
    results = {
        "train_seconds": round(time.time() - start, 1),
        "epochs_autoencoder": len(model.history["train_loss_autoencoder"]),
        "epochs_flow": len(model.history["train_loss_flow"]),
    }
    type_threshold, batch_threshold = thresholds(adata)

    grid = np.zeros((len(WEIGHTS), len(WEIGHTS)))
    for i, type_weight in enumerate(WEIGHTS):
        for j, batch_weight in enumerate(WEIGHTS):
            cells = model.generate(
                n_cells=1000,
                conditions={"cell_type": "type1", "batch": "b1"},
                guidance_weights={"cell_type": type_weight, "batch": batch_weight},
                seed=0,
                progress_bar=False,
            )
            both = (signature_share(cells, TYPE_GENES["type1"]) > type_threshold) & (
                signature_share(cells, BATCH_GENES) > batch_threshold
            )
            grid[i, j] = both.mean()
    results["fraction_type1_and_b1"] = {
        f"w_type={wt},w_batch={wb}": round(float(grid[i, j]), 3)
        for i, wt in enumerate(WEIGHTS)
        for j, wb in enumerate(WEIGHTS)
    }
    results["real_fraction_type1_and_b1"] = round(
        float(((adata.obs["cell_type"] == "type1") & (adata.obs["batch"] == "b1")).mean()), 3
    )
    print("fraction carrying type1 and b1 markers (rows: type weight, cols: batch weight)")
    print(pd.DataFrame(grid, index=WEIGHTS, columns=WEIGHTS).round(3))

    module = model.module
    z = torch.randn(256, module.n_latent)
    codes = torch.tensor([[1, 1]]).expand(256, -1)
    with torch.no_grad():
        guided = module.guided_field(codes, torch.zeros(256, 2))(torch.tensor(0.4), z)
        unconditional = module.flow.velocity_field(
            z, torch.full((256,), 0.4), module.flow.null_codes.expand(256, -1)
        )
    results["zero_weights_max_abs_difference"] = float((guided - unconditional).abs().max())

    projection = PCAProjection(adata, n_components=20)
    real_pcs = projection.transform(adata)
    batch_classifier = LogisticRegression(max_iter=2000).fit(real_pcs, adata.obs["batch"])
    type_classifier = LogisticRegression(max_iter=2000).fit(real_pcs, adata.obs["cell_type"])
    b0 = np.flatnonzero((adata.obs["batch"] == "b0").to_numpy())[:600]
    moved = model.transfer(adata, to={"batch": "b1"}, indices=b0, seed=0, progress_bar=False)
    moved_pcs = projection.transform(moved)
    results["transfer_b0_to_b1"] = {
        "batch_classifier_says_b1_before": float(
            (batch_classifier.predict(real_pcs[b0]) == "b1").mean()
        ),
        "batch_classifier_says_b1_after": float(
            (batch_classifier.predict(moved_pcs) == "b1").mean()
        ),
        "type_classifier_keeps_type": float(
            (type_classifier.predict(moved_pcs) == adata.obs["cell_type"].to_numpy()[b0]).mean()
        ),
    }
    same = model.transfer(
        adata, to={"batch": "b0"}, indices=b0[:200], rtol=1e-7, atol=1e-7, progress_bar=False
    )
    latent = model.get_latent_representation(adata, indices=b0[:200])
    results["round_trip_max_abs_error"] = float(
        np.abs(same.obsm["X_cfgen_transferred"] - latent).max()
    )
    results["round_trip_latent_scale"] = float(np.abs(latent).max())
    results["augmentation_probabilities"] = {
        k: round(float(v), 3) for k, v in model.augmentation_probabilities("cell_type").items()
    }
    print(json.dumps(results, indent=2))
    (outdir / "guidance.json").write_text(json.dumps(results, indent=2))

    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    image = axis.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1)
    axis.set_xticks(range(len(WEIGHTS)), WEIGHTS)
    axis.set_yticks(range(len(WEIGHTS)), WEIGHTS)
    axis.set_xlabel("batch weight (b1)")
    axis.set_ylabel("cell-type weight (type1)")
    for i in range(len(WEIGHTS)):
        for j in range(len(WEIGHTS)):
            axis.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    axis.set_title("generated cells with type1 and b1 markers")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(outdir / "guidance_grid.png", dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmark_output/guidance"))
