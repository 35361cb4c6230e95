"""What cellFlow mode (``latent="genes"``) costs next to the default bottleneck, by gene count.

PBMC3k's cells (:func:`scvi_cfgen.datasets.pbmc3k`) restricted to the ``n`` genes of
highest total count, for each ``n`` in ``--genes`` (default 2,000 and all 9,648). For each gene
count and each latent mode, in a separate subprocess (so that each peak RSS is that run's alone):

- the autoencoder and the flow are trained for ``--epochs`` epochs each (early stopping off),
  and each stage's time per optimiser step is recorded (the stage's wall time, validation and
  the data passes before it included, divided by its training steps);
- 2,000 cells are generated (cells per second, default solver);
- the module's parameter count, the flow's latent dimension and the process's peak resident
  memory (``VmHWM``) after training and at the end.

Results go to ``DIR/cellflow_cost.csv`` and ``DIR/cellflow_cost.md``.

Run: ``python benchmarks/cellflow_cost.py [--genes 2000 9648] [--epochs 3] [--out DIR]``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import peak_rss_mb

N_GENERATED = 2000
BATCH_SIZE = 256


def worker(n_genes: int, latent: str, epochs: int, result: Path) -> None:
    """Train and generate in this process; write the measurements to ``result`` (JSON)."""
    import scvi
    import torch

    import scvi_cfgen

    scvi.settings.seed = 0
    adata = scvi_cfgen.datasets.pbmc3k()
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-totals)[:n_genes])
    adata = adata[:, keep].copy()
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = scvi_cfgen.CFGenModel(adata, latent=latent)
    out = {
        "latent": latent,
        "n_genes": int(adata.n_vars),
        "n_cells": int(adata.n_obs),
        "flow_dim": int(model.module.n_latent),
        "parameters": int(sum(p.numel() for p in model.module.parameters())),
        "torch_threads": torch.get_num_threads(),
    }
    common = {"max_epochs": epochs, "early_stopping": False, "enable_progress_bar": False}
    start = time.perf_counter()
    model.train_autoencoder(batch_size=BATCH_SIZE, **common)
    ae_seconds = time.perf_counter() - start
    n_steps = epochs * math.ceil(len(model.train_indices) / BATCH_SIZE)
    start = time.perf_counter()
    model.train_flow(batch_size=BATCH_SIZE, **common)
    flow_seconds = time.perf_counter() - start
    out["train_peak_rss_mb"] = peak_rss_mb()
    out["autoencoder_s_per_step"] = ae_seconds / n_steps
    out["flow_s_per_step"] = flow_seconds / n_steps
    start = time.perf_counter()
    generated = model.generate(n_cells=N_GENERATED, seed=0)
    out["generated_cells_per_s"] = N_GENERATED / (time.perf_counter() - start)
    out["generated_mean_umis"] = float(np.asarray(generated.X.sum(axis=1)).mean())
    out["peak_rss_mb"] = peak_rss_mb()
    result.write_text(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", nargs="+", type=int, default=[2000, 9648])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/cellflow_cost"))
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # n_genes latent result
    args = parser.parse_args()
    if args.worker:
        n_genes, latent, result = args.worker
        worker(int(n_genes), latent, args.epochs, Path(result))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n_genes in args.genes:
        for latent in ("bottleneck", "genes"):
            result = args.out / f"{latent}_{n_genes}.json"
            command = [sys.executable, __file__]
            command += [
                "--epochs",
                str(args.epochs),
                "--worker",
                str(n_genes),
                latent,
                str(result),
            ]
            subprocess.run(command, check=True)
            rows.append(json.loads(result.read_text()))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "cellflow_cost.csv", index=False)
    (args.out / "cellflow_cost.md").write_text(table.to_markdown(index=False, floatfmt=".3g"))
    print(table.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
