"""Command line: ``scvi-cfgen demo | train | generate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scvi_cfgen.module._data_statistics import SIZE_FACTOR_LAWS

DEMO_MAX_EPOCHS_AUTOENCODER = 100
DEMO_MAX_EPOCHS_FLOW = 400


def _stratified_split(labels: pd.Series, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test cells, the same fraction of every label."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in labels.unique():
        members = np.flatnonzero((labels == label).to_numpy())
        n_test = int(round(test_fraction * len(members)))
        test[rng.choice(members, n_test, replace=False)] = True
    return test


def run_demo(
    outdir: Path,
    max_epochs_autoencoder: int = DEMO_MAX_EPOCHS_AUTOENCODER,
    max_epochs_flow: int = DEMO_MAX_EPOCHS_FLOW,
    seed: int = 0,
    n_cells: int | None = None,
    accelerator: str = "auto",
) -> dict:
    """Train on 80 % of PBMC3k, generate the held-out 20 % cell-type mix, plot and summarise.

    Parameters
    ----------
    outdir
        Where ``generated.h5ad``, ``real_vs_generated.png``, ``summary.json`` and the model go.
    max_epochs_autoencoder, max_epochs_flow
        Epoch caps of the two stages (early stopping on validation loss may stop sooner).
    seed
        Seed of the split, training and generation.
    n_cells
        Use only this many cells (stratified) for a quicker run; ``None`` for all 2,638.
    accelerator
        Lightning accelerator.
    """
    import matplotlib

    matplotlib.use("Agg")
    import scvi

    from scvi_cfgen import CFGenModel, datasets
    from scvi_cfgen.metrics import PCAProjection, count_summary, knn_label_agreement
    from scvi_cfgen.pl import real_vs_generated_embedding, training_history

    scvi.settings.seed = seed
    outdir.mkdir(parents=True, exist_ok=True)
    adata = datasets.pbmc3k()
    if n_cells is not None and n_cells < adata.n_obs:
        keep = _stratified_split(adata.obs["cell_type"], n_cells / adata.n_obs, seed)
        adata = adata[keep].copy()
    test_mask = _stratified_split(adata.obs["cell_type"], 0.2, seed)
    train, test = adata[~test_mask].copy(), adata[test_mask].copy()
    print(f"PBMC3k: {train.n_obs} training cells, {test.n_obs} held out, {adata.n_vars} genes.")

    CFGenModel.setup_anndata(train, categorical_covariate_keys=["cell_type"])
    model = CFGenModel(train)
    start = time.time()
    model.train(
        max_epochs={"autoencoder": max_epochs_autoencoder, "flow": max_epochs_flow},
        accelerator=accelerator,
    )
    train_seconds = time.time() - start
    model.save(outdir / "model", overwrite=True)
    training_history(model).savefig(outdir / "training_history.png", dpi=110)

    start = time.time()
    generated = model.generate(conditions=test.obs[["cell_type"]], seed=seed)
    generate_seconds = time.time() - start
    generated.write_h5ad(outdir / "generated.h5ad")

    projection = PCAProjection(train, n_components=30, seed=seed)
    real_pcs, generated_pcs = projection.transform(test), projection.transform(generated)
    agreement = knn_label_agreement(
        projection.transform(train),
        train.obs["cell_type"],
        generated_pcs,
        generated.obs["cell_type"],
    )
    figure = real_vs_generated_embedding(
        real_pcs,
        test.obs["cell_type"],
        generated_pcs,
        generated.obs["cell_type"],
        title="PBMC3k: held-out real cells vs CFGen cells",
        seed=seed,
    )
    figure.savefig(outdir / "real_vs_generated.png", dpi=120)

    summary = {
        "training_cells": int(train.n_obs),
        "generated_cells": int(generated.n_obs),
        "epochs_autoencoder": len(model.history.get("train_loss_autoencoder", [])),
        "epochs_flow": len(model.history.get("train_loss_flow", [])),
        "train_seconds": round(train_seconds, 1),
        "generate_seconds": round(generate_seconds, 1),
        "knn_label_agreement": {k: round(float(v), 3) for k, v in agreement.items()},
        "counts": {k: round(v, 4) for k, v in count_summary(test.X, generated.X).items()},
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nTrained in {train_seconds:.0f} s ({summary['epochs_autoencoder']} autoencoder + "
        f"{summary['epochs_flow']} flow epochs); generated {generated.n_obs} cells in "
        f"{generate_seconds:.1f} s."
    )
    print("10-NN classifier (fitted on real training cells) agrees with the generated label:")
    for label, value in agreement.items():
        print(f"  {label:<14} {value:.2f}")
    counts = summary["counts"]
    print(
        f"Zero fraction per cell: real {counts['zero_fraction_real']:.3f}, generated "
        f"{counts['zero_fraction_generated']:.3f}; Pearson r of per-gene log mean "
        f"{counts['log_mean_pearson']:.3f}, log variance {counts['log_variance_pearson']:.3f}."
    )
    print(
        f"Wrote {outdir / 'generated.h5ad'}, {outdir / 'real_vs_generated.png'}, "
        f"{outdir / 'summary.json'} and the model in {outdir / 'model'}."
    )
    return summary


def _parse_conditions(pairs: Sequence[str]) -> dict[str, str]:
    conditions = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--condition expects ATTRIBUTE=CATEGORY, got {pair!r}.")
        key, value = pair.split("=", 1)
        conditions[key] = value
    return conditions


def _check_output_free(path: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """Refuse, before any work, to replace an existing file or directory."""
    if path.exists() and not overwrite:
        kind = "directory" if path.is_dir() else "file"
        raise ValueError(f"{path} already exists ({kind}); pass {flag} to replace it.")


def _train(args: argparse.Namespace) -> None:
    from scvi_cfgen import CFGenModel

    _check_output_free(args.model_dir, args.overwrite)
    if args.resume and args.checkpoint_dir is None:
        raise ValueError("--resume needs the --checkpoint-dir of the run to resume.")
    if args.seed is not None:
        import scvi

        scvi.settings.seed = args.seed
    adata = ad.read_h5ad(args.input)
    CFGenModel.setup_anndata(adata, layer=args.layer, categorical_covariate_keys=args.attributes)
    model = CFGenModel(
        adata,
        n_latent=args.n_latent,
        cluster_resolution=args.cluster_resolution,
        latent=args.latent,
        size_factor_law=args.size_factor_law,
    )
    model.train(
        max_epochs={"autoencoder": args.max_epochs_autoencoder, "flow": args.max_epochs_flow},
        accelerator=args.accelerator,
        batch_size=args.batch_size,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        plan_kwargs={"flow": {"precision": args.flow_precision}},
    )
    if args.realism_filter:
        summary = model.train_realism_filter()
        print(f"Realism scorer: validation AUC {summary['validation_auc']:.3f}.")
    model.save(args.model_dir, overwrite=args.overwrite)
    print(f"Saved the trained model in {args.model_dir}.")


def _generate(args: argparse.Namespace) -> None:
    from scvi_cfgen import CFGenModel

    solver = {"solver": args.solver, "n_steps": args.n_steps}
    _check_output_free(args.output, args.overwrite)
    model = CFGenModel.load(args.model_dir, accelerator=args.accelerator)
    if args.like is not None:
        reference = ad.read_h5ad(args.like, backed="r")
        columns = [name for name in model.attribute_categories if name in reference.obs]
        if not columns:
            raise SystemExit(
                f"{args.like} has none of the attributes {list(model.attribute_categories)}."
            )
        conditions = reference.obs[columns]
        n_cells = None
    else:
        conditions = _parse_conditions(args.condition) or None
        n_cells = args.n_cells
    model.generate(
        n_cells=n_cells,
        conditions=conditions,
        seed=args.seed,
        batch_size=args.batch_size,
        **{key: value for key, value in solver.items() if value is not None},
        out=args.output,
        overwrite=args.overwrite,
        keep_fraction=args.keep_fraction,
    )
    print(f"Wrote the generated cells to {args.output} (streamed chunk by chunk).")


def build_parser() -> argparse.ArgumentParser:
    """The ``scvi-cfgen`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="scvi-cfgen", description="Generate realistic single-cell counts with CFGen."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train on the built-in PBMC3k and generate cells")
    demo.add_argument("--outdir", type=Path, default=Path("demo_output"))
    demo.add_argument("--max-epochs-autoencoder", type=int, default=DEMO_MAX_EPOCHS_AUTOENCODER)
    demo.add_argument("--max-epochs-flow", type=int, default=DEMO_MAX_EPOCHS_FLOW)
    demo.add_argument("--n-cells", type=int, default=None, help="subsample PBMC3k (quick runs)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--accelerator", default="auto")

    train = commands.add_parser("train", help="train a model on an .h5ad of raw counts")
    train.add_argument("input", type=Path, help=".h5ad with raw counts")
    train.add_argument("--model-dir", type=Path, required=True)
    train.add_argument("--layer", default=None, help="layer with raw counts (default: X)")
    train.add_argument("--attributes", nargs="*", default=None, help="obs columns to condition on")
    train.add_argument(
        "--n-latent",
        type=int,
        default=None,
        help="latent dimension (default 50, or cells/10 below 500 cells; not with genes)",
    )
    train.add_argument(
        "--latent",
        choices=["bottleneck", "genes"],
        default="bottleneck",
        help="'genes': cellFlow mode, the flow models every gene's logit (no bottleneck)",
    )
    train.add_argument(
        "--cluster-resolution",
        type=float,
        default=None,
        help="also condition on Leiden clusters of the latent space at this resolution "
        "(attribute 'cluster'; for data without labels)",
    )
    train.add_argument(
        "--size-factor-law",
        choices=SIZE_FACTOR_LAWS,
        default="lognormal",
        help="law of generated cells' total counts per category: the paper's log-normal, the "
        "same restricted to the training range, or the training cells' empirical depths",
    )
    train.add_argument("--max-epochs-autoencoder", type=int, default=None)
    train.add_argument("--max-epochs-flow", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--accelerator", default="auto")
    train.add_argument("--seed", type=int, default=None, help="scvi.settings.seed (reproducible)")
    train.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="write checkpoints here so an interrupted run can --resume",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --checkpoint-dir"
    )
    train.add_argument(
        "--flow-precision",
        default="auto",
        help="arithmetic of the flow stage: auto (bfloat16 products where the hardware has "
        "them), 32 or bf16-mixed",
    )
    train.add_argument(
        "--realism-filter",
        action="store_true",
        help="also train the scorer that `generate --keep-fraction` uses",
    )
    train.add_argument("--overwrite", action="store_true")

    generate = commands.add_parser("generate", help="generate cells from a saved model")
    generate.add_argument("model_dir", type=Path)
    generate.add_argument("--output", type=Path, required=True)
    generate.add_argument("--n-cells", type=int, default=None)
    generate.add_argument("--condition", action="append", default=[], metavar="ATTRIBUTE=CATEGORY")
    generate.add_argument(
        "--like",
        type=Path,
        default=None,
        help=".h5ad whose obs attributes give one generated cell per row",
    )
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--batch-size", type=int, default=1024)
    generate.add_argument(
        "--solver", default=None, help="ODE solver (default: generate's, rk4 with 3 steps)"
    )
    generate.add_argument("--n-steps", type=int, default=None, help="steps of a fixed-step solver")
    generate.add_argument(
        "--keep-fraction",
        type=float,
        default=None,
        help="keep the most real-looking fraction of oversampled cells (needs a model trained "
        "with --realism-filter)",
    )
    generate.add_argument("--accelerator", default="auto")
    generate.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scvi-cfgen`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            run_demo(
                args.outdir,
                args.max_epochs_autoencoder,
                args.max_epochs_flow,
                args.seed,
                args.n_cells,
                args.accelerator,
            )
        elif args.command == "train":
            _train(args)
        else:
            _generate(args)
    except ValueError as error:
        print(f"scvi-cfgen: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
