"""The flow stage in float32 vs bfloat16 matrix products, paired on the same autoencoder.

Per case of the generalisation suite and seed: the package-default autoencoder is trained once,
then the flow stage is trained twice from its weights with the same seed — ``precision="32"``
and ``precision="bf16-mixed"`` (the velocity field's matrix products under
:func:`torch.autocast`) — and both models generate the test set's labels with the same seed.
Pairing the two flows on one autoencoder, split and seed isolates the effect of the arithmetic
from the seed-to-seed noise (c2st moves ~0.02 between unpaired runs).

Reports per run: the flow stage's seconds, epochs and seconds per epoch (validation included),
its final validation loss, and the suite's metrics (c2st, W2, zeros, log-variance; ratios to the
real-vs-real floor) with the protocol of ``quality.py``.

    python benchmarks/flow_precision.py --cases pbmc3k shallow --seeds 0 1 2 \
        --out benchmark_output/flow_precision
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import pandas as pd
import scvi

sys.path.insert(0, str(Path(__file__).parent))
from generalisation import CASES, LABEL, append, load_case
from quality import CFGenGenerator, split

import scvi_cfgen
from scvi_cfgen import metrics

PRECISIONS = ("32", "bf16-mixed")
SHOWN = ("c2st_auc", "wasserstein2", "zeros_w1", "log_variance_error")


def run(case: str, seed: int, out: Path) -> None:
    """Both precisions on one case and seed; rows appended to ``out/runs.csv``."""
    adata = load_case(case)
    attributes = [LABEL, "batch"] if case == "guidance200" else [LABEL]
    train, test, reference, floor_pool = split(adata, seed)
    labels = test.obs[LABEL].astype(str).to_numpy()
    generator = CFGenGenerator()
    generator.train_data = train.copy()
    scvi_cfgen.CFGenModel.setup_anndata(
        generator.train_data, categorical_covariate_keys=attributes
    )
    scvi.settings.seed = seed
    generator.model = model = scvi_cfgen.CFGenModel(generator.train_data)
    model.train_autoencoder(enable_progress_bar=False)
    autoencoder = copy.deepcopy(model.module.state_dict())
    rows = []
    for precision in PRECISIONS:
        model.module.load_state_dict(autoencoder)
        scvi.settings.seed = seed
        start = time.perf_counter()
        model.train_flow(enable_progress_bar=False, plan_kwargs={"precision": precision})
        seconds = time.perf_counter() - start
        summary = model.training_summary_["flow"]
        scores = metrics.evaluate(
            test,
            generator.generate(labels, seed),
            LABEL,
            reference=reference,
            floor=floor_pool,
            seed=seed,
        )
        overall = scores[scores["label"] == "overall"].set_index("set")
        row = {
            "case": case,
            "seed": seed,
            "precision": precision,
            "flow_seconds": round(seconds, 2),
            "flow_epochs": summary["epochs"],
            "seconds_per_epoch": round(seconds / max(summary["epochs"], 1), 4),
            "validation_loss": summary["validation_loss"],
        }
        for name in SHOWN:
            row[name] = float(overall.loc["generated", name])
            if name != "c2st_auc":
                row[f"{name}/floor"] = float(
                    overall.loc["generated", name] / overall.loc["floor", name]
                )
        rows.append(row)
        print(
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True
        )
    append(pd.DataFrame(rows), out / "runs.csv")


def summarise(out: Path) -> str:
    """Mean over seeds per case and precision, and the paired bf16 - float32 differences."""
    runs = pd.read_csv(out / "runs.csv")
    columns = [
        "seconds_per_epoch",
        "flow_epochs",
        "validation_loss",
        "c2st_auc",
        "wasserstein2/floor",
        "zeros_w1/floor",
        "log_variance_error/floor",
    ]
    means = runs.groupby(["case", "precision"])[columns].mean().round(4)
    wide = runs.pivot_table(index=["case", "seed"], columns="precision", values=columns[2:])
    paired = pd.DataFrame(
        {name: wide[(name, "bf16-mixed")] - wide[(name, "32")] for name in columns[2:]}
    )
    differences = paired.groupby("case").agg(["mean", "std"]).round(4)
    differences.columns = [f"{a} {b}" for a, b in differences.columns]
    text = (
        "## Mean per case and precision\n\n"
        + means.to_markdown()
        + "\n\n## Paired difference, bf16-mixed - float32 (mean, sd over seeds)\n\n"
        + differences.to_markdown()
        + "\n"
    )
    (out / "summary.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/flow_precision"))
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        for case in args.cases:
            for seed in args.seeds:
                run(case, seed, args.out)
    print(summarise(args.out))


if __name__ == "__main__":
    main()
