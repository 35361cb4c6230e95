"""Foundation acceptance check on PBMC3k: train on all cells with package defaults, generate
500 cells of B, CD14+ Mono and NK, and score them with a 10-NN classifier fitted on the real
cells' log-normalised 30-PC embedding; also compare per-cell zero fractions and per-gene
mean/variance with the real cells. Run: ``python benchmarks/pbmc3k_acceptance.py [outdir]``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import scanpy as sc
from sklearn.neighbors import KNeighborsClassifier

import scvi_cfgen


def log_normalise(adata):
    adata = adata.copy()
    adata.X = adata.X.astype(np.float32)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    adata = scvi_cfgen.datasets.pbmc3k()
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = scvi_cfgen.CFGenModel(adata)
    start = time.time()
    model.train(enable_progress_bar=False)
    train_seconds = time.time() - start
    model.save(outdir / "model", overwrite=True)

    real = log_normalise(adata)
    sc.pp.pca(real, n_comps=30)
    knn = KNeighborsClassifier(n_neighbors=10).fit(real.obsm["X_pca"], real.obs["cell_type"])
    loadings, means = real.varm["PCs"], np.asarray(real.X.mean(axis=0)).ravel()

    results = {
        "train_seconds": train_seconds,
        "epochs_autoencoder": len(model.history["train_loss_autoencoder"]),
        "epochs_flow": len(model.history["train_loss_flow"]),
    }
    for cell_type in ["B", "CD14+ Mono", "NK"]:
        start = time.time()
        generated = model.generate(n_cells=500, conditions={"cell_type": cell_type}, seed=0)
        seconds = time.time() - start
        counts = generated.X
        assert counts.dtype.kind == "i"
        assert counts.min() >= 0
        assert list(generated.var_names) == list(adata.var_names)
        projected = (np.asarray(log_normalise(generated).X.todense()) - means) @ loadings
        accuracy = float((knn.predict(projected) == cell_type).mean())
        real_type = adata[adata.obs["cell_type"] == cell_type]
        zeros_real = 1 - (real_type.X > 0).mean(axis=1).A1
        zeros_gen = 1 - (counts > 0).mean(axis=1).A1

        def mean_var(x):
            x = x.astype(np.float64)
            mean = np.asarray(x.mean(axis=0)).ravel()
            var = np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2
            return mean, var

        m_r, v_r = mean_var(real_type.X)
        m_g, v_g = mean_var(counts)
        keep = (m_r > 0) & (m_g > 0)
        results[cell_type] = {
            "knn_fraction_assigned": accuracy,
            "generate_seconds": seconds,
            "zero_fraction_real_mean": float(zeros_real.mean()),
            "zero_fraction_generated_mean": float(zeros_gen.mean()),
            "log_mean_pearson": float(np.corrcoef(np.log(m_r[keep]), np.log(m_g[keep]))[0, 1]),
            "log_var_pearson": float(np.corrcoef(np.log(v_r[keep]), np.log(v_g[keep]))[0, 1]),
            "total_counts_real_median": float(
                np.median(np.asarray(real_type.X.sum(axis=1)).ravel())
            ),
            "total_counts_generated_median": float(
                np.median(np.asarray(counts.sum(axis=1)).ravel())
            ),
        }
        print(cell_type, results[cell_type], flush=True)
    print(json.dumps(results, indent=2))
    (outdir / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmark_output/acceptance"))
