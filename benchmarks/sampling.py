"""Sampling speed against quality: which ODE solver and step count `generate` should use.

For each case of the generalisation suite (PBMC3k, a 600-cell subsample, a shallow thinning and
a synthetic NB set), CFGen is trained once per seed with the package defaults (80/20 stratified
split, as in ``generalisation.py``). Then, for every solver setting, the same model:

- generates 4,096 cells with the test set's label mix, timed (cells per second), next to the
  floor measured in the same process: drawing that many cells' counts alone from scvi-tools'
  ``NegativeBinomial`` with the model's decoded means and dispersions;
- generates the test set's labels and is scored against the test cells (c2st AUC and W2 over its
  real-vs-real floor), so every setting is compared with dopri5 on the same model (paired).

Run: ``python benchmarks/sampling.py [--cases pbmc3k ...] [--seeds 0 1 2] [--out DIR]``; rows
are appended to ``DIR/sampling.csv`` (default ``benchmark_output/sampling``), finished
(case, seed) pairs are skipped, ``--summarise-only`` prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scvi.distributions import NegativeBinomial

sys.path.insert(0, str(Path(__file__).parent))
from generalisation import LABEL, append, fit_cfgen, load_case
from quality import CFGenGenerator, split

import scvi_cfgen
from scvi_cfgen import metrics

RATIO_METRICS = ("wasserstein2", "zeros_w1", "log_variance_error", "log_mean_error")

SETTINGS = [
    ("dopri5", 0),
    ("euler", 4),
    ("euler", 8),
    ("euler", 16),
    ("midpoint", 2),
    ("midpoint", 4),
    ("midpoint", 8),
    ("rk4", 2),
    ("rk4", 3),
    ("rk4", 5),
]
N_TIMED = 4096
CASES = ("pbmc3k", "pbmc600", "shallow", "synthetic")


def velocity_evaluations(solver: str, n_steps: int) -> str:
    per_step = {"euler": 1, "midpoint": 2, "rk4": 4}
    return "adaptive" if solver == "dopri5" else str(per_step[solver] * n_steps)


@torch.inference_mode()
def nb_floor(model, labels: np.ndarray, seed: int) -> float:
    """Cells per second of drawing NB counts alone, for decoded means of generated latents."""
    cells = model.generate(
        conditions=pd.DataFrame({LABEL: labels}),
        seed=seed,
        solver="euler",
        n_steps=2,
        progress_bar=False,
    )
    module = model.module
    latent = torch.randn(len(labels), module.n_latent)
    library = torch.as_tensor(np.asarray(cells.obs["size_factor"]), dtype=torch.float32)
    nb = module.autoencoder.count_distribution(module.unstandardize_latent(latent), library, None)
    mu, theta = nb.mu.contiguous(), nb.theta.expand_as(nb.mu).contiguous()
    best = np.inf
    for _ in range(3):
        began = time.perf_counter()
        for rows in np.array_split(np.arange(len(labels)), max(1, len(labels) // 1024)):
            NegativeBinomial(mu=mu[rows], theta=theta[rows]).sample()
        best = min(best, time.perf_counter() - began)
    return len(labels) / best


def parse_setting(text: str) -> tuple[str, int]:
    """``"rk4:3"`` -> ``("rk4", 3)``; ``"dopri5"`` -> ``("dopri5", 0)``."""
    solver, _, steps = text.partition(":")
    return solver, int(steps or 0)


def run(case: str, seed: int, out: Path, settings: list[tuple[str, int]]) -> None:
    adata = load_case(case)
    train, test, reference, floor_pool = split(adata, seed)
    saved = out / "models" / f"{case}_seed{seed}"
    began = time.perf_counter()
    if (saved / "model.pt").is_file():  # trained by an earlier run: rescore only
        model = scvi_cfgen.CFGenModel.load(saved)
    else:
        generator = CFGenGenerator()
        fit_cfgen(generator, train, seed, [LABEL])
        model = generator.model
        model.save(saved, overwrite=True)
    train_seconds = time.perf_counter() - began
    test_labels = test.obs[LABEL].astype(str).to_numpy()
    timed_labels = np.resize(test_labels, N_TIMED)
    floor = nb_floor(model, timed_labels, seed)
    rows = []
    for solver, n_steps in settings:
        kwargs = {"solver": solver, "progress_bar": False}
        if n_steps:
            kwargs["n_steps"] = n_steps
        began = time.perf_counter()
        model.generate(conditions=pd.DataFrame({LABEL: timed_labels}), seed=seed, **kwargs)
        speed = N_TIMED / (time.perf_counter() - began)
        generated = model.generate(
            conditions=pd.DataFrame({LABEL: test_labels}), seed=seed, **kwargs
        )
        generated.obs[LABEL] = generated.obs[LABEL].astype(str)
        scores = metrics.evaluate(
            test, generated, LABEL, reference=reference, floor=floor_pool, seed=seed
        )
        overall = scores[scores["label"] == "overall"].set_index("set")
        rows.append(
            {
                "case": case,
                "seed": seed,
                "solver": solver,
                "n_steps": n_steps or "",
                "evaluations": velocity_evaluations(solver, n_steps),
                "cells_per_s": round(speed, 1),
                "nb_floor_cells_per_s": round(floor, 1),
                "ratio_to_floor": round(speed / floor, 3),
                "c2st_auc": overall.loc["generated", "c2st_auc"],
                **{
                    f"{metric}_over_floor": overall.loc["generated", metric]
                    / overall.loc["floor", metric]
                    for metric in RATIO_METRICS
                },
                "train_seconds": round(train_seconds, 1),
                "torch_threads": torch.get_num_threads(),
            }
        )
        print(rows[-1], flush=True)
    append(pd.DataFrame(rows), out / "sampling.csv")


def summarise(out: Path) -> str:
    """Mean over seeds per case and setting, with the c2st difference to dopri5."""
    frame = pd.read_csv(out / "sampling.csv")
    frame["n_steps"] = frame["n_steps"].fillna("").astype(str).str.replace(".0", "", regex=False)
    reference = frame[frame["solver"] == "dopri5"].set_index(["case", "seed"])
    frame["c2st_minus_dopri5"] = (
        frame["c2st_auc"]
        - reference.loc[
            list(zip(frame["case"], frame["seed"], strict=True)), "c2st_auc"
        ].to_numpy()
    )
    columns = [
        "ratio_to_floor",
        "cells_per_s",
        "c2st_auc",
        "c2st_minus_dopri5",
        *(f"{metric}_over_floor" for metric in RATIO_METRICS),
    ]
    table = (
        frame.groupby(["case", "solver", "n_steps", "evaluations"], sort=False)[columns]
        .mean()
        .round(3)
    )
    seeds = frame.groupby("case")["seed"].nunique().to_dict()
    return f"Seeds per case: {seeds}\n\n" + table.to_markdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/sampling"))
    parser.add_argument(
        "--settings",
        nargs="+",
        default=[f"{solver}:{steps}" if steps else solver for solver, steps in SETTINGS],
        help="solver[:n_steps] settings, e.g. dopri5 rk4:3 (default: the whole grid)",
    )
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        path = args.out / "sampling.csv"
        finished = set()
        if path.exists():
            previous = pd.read_csv(path)
            finished = set(zip(previous["case"], previous["seed"], strict=True))
        for seed in args.seeds:
            for case in args.cases:
                if (case, seed) not in finished:
                    run(case, seed, args.out, [parse_setting(t) for t in args.settings])
    summary = summarise(args.out)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
