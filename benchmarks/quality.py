"""Quality benchmark on PBMC3k: CFGen (package defaults) vs scVI as a conditional generator vs a
per-cell-type independent negative-binomial simulator, scored with ``scvi_cfgen.metrics``.

Protocol, per seed: stratified 80/20 train/test split by cell type; the training cells are split
again in two stratified halves, one defining the 30-PC space (``reference``) and one giving the
real-vs-real floor. Every generator trains on all training cells and generates, per cell type,
as many cells as the test set has; all are scored against the test cells. Labels with fewer
than 10 test cells are skipped.

Run: ``python benchmarks/quality.py [--seeds 0 1 2] [--generators cfgen scvi nb] [--out DIR]``.
Writes ``scores.csv`` (every label, seed and generator), ``times.csv``, ``summary.md`` and plots
into ``DIR`` (default ``benchmark_output/quality``). Results are appended seed by seed, so an
interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.model_selection import train_test_split

import scvi_cfgen
from scvi_cfgen import metrics

LABEL = "cell_type"


def split(adata: ad.AnnData, seed: int) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData, ad.AnnData]:
    """Train, test, reference (half of train) and floor pool (other half of train)."""
    labels = adata.obs[LABEL].to_numpy()
    train_idx, test_idx = train_test_split(
        np.arange(adata.n_obs), test_size=0.2, stratify=labels, random_state=seed
    )
    ref_idx, floor_idx = train_test_split(
        train_idx, test_size=0.5, stratify=labels[train_idx], random_state=seed
    )
    return tuple(adata[np.sort(i)].copy() for i in (train_idx, test_idx, ref_idx, floor_idx))


def log_normal_library(train: ad.AnnData) -> dict[str, tuple[float, float]]:
    """Per cell type mean and sd of log total counts."""
    log_totals = np.log(np.asarray(train.X.sum(axis=1)).ravel())
    frame = pd.DataFrame({"label": train.obs[LABEL].to_numpy(), "log": log_totals})
    return {k: (g["log"].mean(), g["log"].std()) for k, g in frame.groupby("label")}


def as_counts(matrix: np.ndarray, like: ad.AnnData, labels: np.ndarray) -> ad.AnnData:
    """Generated counts as an AnnData with the training genes and the labels."""
    obs = pd.DataFrame(
        {LABEL: pd.Categorical(labels)}, index=[f"g{i}" for i in range(len(labels))]
    )
    return ad.AnnData(sp.csr_matrix(matrix.astype(np.int32)), obs=obs, var=like.var[[]].copy())


class NegativeBinomialSimulator:
    """Per cell type, genes are independent NB: mean = library x the type's mean proportion,
    inverse dispersion moment-matched on the type's cells; library log-normal per type."""

    name = "NB simulator"

    def fit(self, train: ad.AnnData, seed: int) -> None:
        self.like = train
        self.library = log_normal_library(train)
        self.params = {}
        for label in train.obs[LABEL].unique():
            counts = sp.csr_matrix(train[train.obs[LABEL] == label].X, dtype=np.float64)
            totals = np.asarray(counts.sum(axis=1)).ravel()
            proportion = np.asarray(counts.sum(axis=0)).ravel() / totals.sum()
            mean, var = metrics.gene_mean_variance(counts)
            excess = var - mean
            theta = np.where(excess > 1e-8, mean**2 / np.maximum(excess, 1e-8), 1e6)
            self.params[label] = (proportion, np.clip(theta, 1e-4, 1e6))

    def generate(self, labels: np.ndarray, seed: int) -> ad.AnnData:
        rng = np.random.default_rng(seed)
        rows = np.zeros((len(labels), self.like.n_vars), dtype=np.int64)
        for label in np.unique(labels):
            where = np.flatnonzero(labels == label)
            mu_log, sd_log = self.library[label]
            library = np.exp(rng.normal(mu_log, sd_log, size=len(where)))
            proportion, theta = self.params[label]
            mean = library[:, None] * proportion[None, :]
            rate = rng.gamma(shape=theta[None, :], scale=mean / theta[None, :])
            rows[where] = rng.poisson(rate)
        return as_counts(rows, self.like, labels)


class SCVIGenerator:
    """scvi-tools' SCVI with the decoder conditioned on cell type (``batch_key``), z ~ N(0, I),
    library from a per-type log-normal; scVI's defaults otherwise (400 epochs at this size)."""

    name = "scVI"

    def fit(self, train: ad.AnnData, seed: int) -> None:
        import scvi

        scvi.settings.seed = seed
        self.train_data = train.copy()
        scvi.model.SCVI.setup_anndata(self.train_data, batch_key=LABEL)
        self.model = scvi.model.SCVI(self.train_data)
        self.model.train(enable_progress_bar=False, check_val_every_n_epoch=1)
        self.epochs = len(self.model.history["elbo_train"])
        self.library = log_normal_library(train)
        mapping = self.model.adata_manager.get_state_registry("batch").categorical_mapping
        self.codes = {label: code for code, label in enumerate(mapping)}

    @torch.inference_mode()
    def generate(self, labels: np.ndarray, seed: int) -> ad.AnnData:
        generator = torch.Generator().manual_seed(seed)
        module = self.model.module.eval()
        log_library = torch.tensor(
            [
                np.random.default_rng(seed + i).normal(*self.library[label])
                for i, label in enumerate(labels)
            ],
            dtype=torch.float32,
        )[:, None]
        z = torch.randn(len(labels), module.n_latent, generator=generator)
        batch = torch.tensor([self.codes[label] for label in labels])[:, None]
        distribution = module.generative(z=z, library=log_library, batch_index=batch)["px"]
        torch.manual_seed(seed)
        counts = distribution.sample().numpy()
        return as_counts(counts, self.train_data, labels)


class CFGenGenerator:
    """``CFGenModel`` with the package defaults, conditioned on cell type."""

    name = "CFGen"

    def fit(self, train: ad.AnnData, seed: int) -> None:
        import scvi

        scvi.settings.seed = seed
        self.train_data = train.copy()
        scvi_cfgen.CFGenModel.setup_anndata(self.train_data, categorical_covariate_keys=[LABEL])
        self.model = scvi_cfgen.CFGenModel(self.train_data)
        self.model.train(enable_progress_bar=False)
        history = self.model.history
        self.epochs = f"{len(history['train_loss_autoencoder'])}+{len(history['train_loss_flow'])}"

    generate_kwargs: dict = {}

    def generate(self, labels: np.ndarray, seed: int) -> ad.AnnData:
        conditions = pd.DataFrame({LABEL: labels})
        generated = self.model.generate(
            conditions=conditions, seed=seed, progress_bar=False, **self.generate_kwargs
        )
        generated.obs[LABEL] = generated.obs[LABEL].astype(str)
        return generated


GENERATORS = {"cfgen": CFGenGenerator, "scvi": SCVIGenerator, "nb": NegativeBinomialSimulator}


def run_seed(adata: ad.AnnData, seed: int, names: list[str], out: Path) -> None:
    train, test, reference, floor_pool = split(adata, seed)
    labels = test.obs[LABEL].astype(str).to_numpy()
    for name in names:
        generator = GENERATORS[name]()
        start = time.perf_counter()
        generator.fit(train, seed)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        generated = generator.generate(labels, seed)
        generate_seconds = time.perf_counter() - start
        assert generated.var_names.equals(test.var_names)
        scores = metrics.evaluate(
            test, generated, LABEL, reference=reference, floor=floor_pool, seed=seed
        ).assign(generator=generator.name, seed=seed)
        times = pd.DataFrame(
            [
                {
                    "generator": generator.name,
                    "seed": seed,
                    "train_seconds": fit_seconds,
                    "generate_seconds": generate_seconds,
                    "epochs": getattr(generator, "epochs", ""),
                }
            ]
        )
        for frame, file in ((scores, "scores.csv"), (times, "times.csv")):
            path = out / file
            frame.to_csv(path, mode="a", header=not path.exists(), index=False)
        overall = scores[scores["label"] == "overall"].set_index("set")[list(metrics.METRICS)]
        print(f"seed {seed} {generator.name}: {fit_seconds:.0f} s\n{overall.round(4)}", flush=True)
        if seed == 0:
            generated.write_h5ad(out / f"generated_{name}_seed0.h5ad")


def summarise(out: Path) -> str:
    """Mean +- sd over seeds of the overall scores, with the floor, as a Markdown table."""
    scores = pd.read_csv(out / "scores.csv")
    times = pd.read_csv(out / "times.csv")
    overall = scores[scores["label"] == "overall"]
    floor = overall[overall["set"] == "floor"].drop_duplicates("seed")
    rows = []
    for name, group in [("real held-out (floor)", floor)] + list(
        overall[overall["set"] == "generated"].groupby("generator")
    ):
        row = {"generator": name}
        for metric in metrics.METRICS:
            row[metric] = f"{group[metric].mean():.4g} ± {group[metric].std(ddof=1):.2g}"
        if name in set(times["generator"]):
            t = times[times["generator"] == name]
            row["train s"] = f"{t['train_seconds'].mean():.0f}"
            row["generate s"] = f"{t['generate_seconds'].mean():.1f}"
        rows.append(row)
    table = pd.DataFrame(rows)
    ratios = metrics.compare_to_floor(overall)
    ratios = ratios[ratios["metric"] != "rbf_mmd"]  # its floor is about 0: read it directly
    ratio_table = ratios.groupby(["generator", "metric"])["ratio"].mean().unstack()
    text = (
        "Mean ± sd over seeds "
        f"{sorted(overall['seed'].unique())}\n\n"
        + table.to_markdown(index=False)
        + "\n\nRatio to the floor (mean over seeds)\n\n"
        + ratio_table[[m for m in metrics.METRICS if m != "rbf_mmd"]].round(3).to_markdown()
        + "\n"
    )
    (out / "summary.md").write_text(text)
    return text


def plot(out: Path) -> None:
    """Figures of seed 0 (embedding, mean-variance, zeros) and of all scores against the floor."""
    import matplotlib

    matplotlib.use("Agg")
    from scvi_cfgen import pl

    scores = pd.read_csv(out / "scores.csv")
    pl.metrics_vs_floor(scores).savefig(out / "metrics_vs_floor.png", dpi=130)
    _, test, reference, _ = split(scvi_cfgen.datasets.pbmc3k(), seed=0)
    generated = {
        GENERATORS[name].name: ad.read_h5ad(path)
        for name in GENERATORS
        if (path := out / f"generated_{name}_seed0.h5ad").exists()
    }
    if not generated:
        return
    pl.mean_variance(test, generated).savefig(out / "mean_variance.png", dpi=130)
    pl.zeros_histogram(test, generated).savefig(out / "zeros.png", dpi=130)
    projection = metrics.PCAProjection(reference.X, n_components=30, seed=0)
    for name, cells in generated.items():
        figure = pl.real_vs_generated_embedding(
            projection.transform(test.X),
            test.obs[LABEL],
            projection.transform(cells.X),
            cells.obs[LABEL],
            title=f"{name}, seed 0: test cells vs generated",
        )
        figure.savefig(out / f"embedding_{name.split()[0].lower()}.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/quality"))
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        adata = scvi_cfgen.datasets.pbmc3k()
        for seed in args.seeds:
            run_seed(adata, seed, args.generators, args.out)
    print(summarise(args.out))
    plot(args.out)


if __name__ == "__main__":
    main()
