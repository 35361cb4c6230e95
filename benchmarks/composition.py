"""Unseen combinations: generate a (cell type, batch) combination that training never saw.

Two data sets with a cell type and a batch, each drawn anew per seed:

- ``synthetic``: 3,000 cells of the two-attribute set of ``guidance_synthetic.py`` (3 types with
  10 marker genes raised 20x, batch ``b1`` raising 10 other genes 8x); held out: type1 x b1.
- ``pbmc3k``: PBMC3k on its 2,000 most variable genes with a simulated batch effect
  (``unseen_combination.batch_effect_pbmc``: cells split at random into batches ``a`` and
  ``b``; 10 % of the genes get a log-fold change ~ N(0, 0.5^2) in ``b``, made by binomial
  thinning, so counts stay negative-binomial integers); held out: CD4 T x b.

Per data set and seed every cell of the held-out combination is removed from training, and so is
a random 40 % of the cells of the same type in the other batch (the *seen* combination, scored as
a sanity check). Each held-out set is split in two random halves: one is the real set scored
against, the other the floor (real cells no generator saw; ``metrics.evaluate``'s floor). The PC
space of the metrics is fitted on all training cells. Generators, all trained on the same cells:

- CFGen (package defaults, both attributes registered), generating ``{type: T, batch: b}`` at a
  grid of guidance weights (type weight, batch weight);
- scVI (400 epochs, ``batch_key`` = batch, the type as a categorical covariate) in two ways:
  ``scVI transfer`` encodes the training cells of (T, a) and decodes them with batch b and their
  observed library; ``scVI prior`` decodes z ~ N(0, I) with (T, b) and a library from T's
  log-normal law;
- the NB simulator of ``quality.py`` fitted on the training cells of type T (all batches: it
  knows only the cell type).

Besides the metrics, ``effect_slope`` measures how much of the true batch effect the cells carry:
the least-squares slope, through the origin, of log(mean normalised expression of the cells /
that of the training cells of (T, a)) on the true log-fold change, over the affected genes
(1: the whole effect, 0: none; the real held-out cells give the value to expect).

Run: ``python benchmarks/composition.py [--cases synthetic pbmc3k] [--seeds 0 1 2]``. Rows go
to ``DIR/runs.csv`` (default ``benchmark_output/composition``), one per case, seed, combination,
generator and weight; a finished (case, seed) is skipped when the run is repeated.
``DIR/detectability.csv`` says how well a classifier separates the two batches within type T
on real cells, and ``DIR/summary.md`` gets the tables (mean ± sd over seeds) and a verdict line
per case.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from generalisation import fit_cfgen
from quality import GENERATORS, LABEL, NegativeBinomialSimulator, as_counts, log_normal_library
from unseen_combination import BATCH, CASES, Case, detectability, effect_slope, hold_out

from scvi_cfgen import metrics

#: (cell-type weight, batch weight) of the CFGen cells.
WEIGHTS = ((1.0, 0.0), (1.0, 1.0), (1.0, 2.0), (1.0, 3.0), (2.0, 1.0), (2.0, 2.0), (3.0, 3.0))
#: (cell-type weight, batch weight) of CFGen's transfer of (T, seen batch) cells.
TRANSFER_WEIGHTS = ((1.0, 1.0), (1.0, 2.0))
SCORED = ("c2st_auc", "wasserstein2", "zeros_w1", "log_mean_error", "log_variance_error")


class SCVIBothCovariates:
    """scvi-tools' SCVI with the batch as ``batch_key`` and the type as a categorical covariate."""

    def fit(self, train: ad.AnnData, seed: int, max_epochs: int | None) -> None:
        import scvi

        scvi.settings.seed = seed
        self.train_data = train.copy()
        scvi.model.SCVI.setup_anndata(
            self.train_data, batch_key=BATCH, categorical_covariate_keys=[LABEL]
        )
        self.model = scvi.model.SCVI(self.train_data)
        self.model.train(max_epochs=max_epochs, enable_progress_bar=False)
        self.epochs = len(self.model.history["elbo_train"])
        self.library = log_normal_library(train)
        manager = self.model.adata_manager
        batches = manager.get_state_registry("batch").categorical_mapping
        types = manager.get_state_registry("extra_categorical_covs").mappings[LABEL]
        self.batch_code = {str(name): code for code, name in enumerate(batches)}
        self.type_code = {str(name): code for code, name in enumerate(types)}

    @torch.inference_mode()
    def _decode(self, z: torch.Tensor, log_library: torch.Tensor, cell_type: str, batch: str):
        n = len(z)
        module = self.model.module.eval()
        distribution = module.generative(
            z=z,
            library=log_library[:, None],
            batch_index=torch.full((n, 1), self.batch_code[batch]),
            cat_covs=torch.full((n, 1), self.type_code[cell_type]),
        )["px"]
        return distribution.sample().numpy()

    def transfer(self, cell_type: str, target: str, chosen: np.ndarray, seed: int):
        """Encode the training cells ``chosen`` (of ``cell_type``), decode them with ``target``."""
        torch.manual_seed(seed)
        z = self.model.get_latent_representation(indices=chosen, give_mean=False)
        totals = np.asarray(self.train_data.X[chosen].sum(axis=1)).ravel()
        counts = self._decode(
            torch.as_tensor(z),
            torch.log(torch.as_tensor(totals, dtype=torch.float32)),
            cell_type,
            target,
        )
        return as_counts(counts, self.train_data, np.full(len(chosen), cell_type))

    def prior(self, cell_type: str, batch: str, n: int, seed: int):
        """Decode z ~ N(0, I) with (type, batch) and a library from the type's log-normal law."""
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.model.module.n_latent, generator=generator)
        mean, sd = self.library[cell_type]
        log_library = torch.as_tensor(
            np.random.default_rng(seed).normal(mean, sd, size=n), dtype=torch.float32
        )
        torch.manual_seed(seed)
        counts = self._decode(z, log_library, cell_type, batch)
        return as_counts(counts, self.train_data, np.full(n, cell_type))


def source_cells(train: ad.AnnData, case: Case, n: int, seed: int) -> np.ndarray:
    """``n`` training cells of (T, seen batch) to transfer (drawn again when there are fewer)."""
    obs = train.obs
    in_pool = (obs[LABEL] == case.cell_type) & (obs[BATCH] == case.seen_batch)
    pool = np.flatnonzero(in_pool.to_numpy())
    return np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=n > len(pool)))


def score(
    real: ad.AnnData, floor: ad.AnnData, cells: ad.AnnData, reference: ad.AnnData, seed: int
) -> tuple[dict, dict]:
    """Scores of ``cells`` and of the floor sample against ``real`` (all one group)."""
    cells = ad.AnnData(cells.X, var=real.var[[]].copy())
    table = metrics.evaluate(real, cells, reference=reference, floor=floor, seed=seed)
    table = table.set_index("set")[list(SCORED)]
    return table.loc["generated"].to_dict(), table.loc["floor"].to_dict()


def run_seed(
    case: Case, seed: int, max_epochs: int | None, with_scvi: bool = True
) -> tuple[pd.DataFrame, dict]:
    """Train the generators once, score both combinations; returns rows and detectability.

    ``with_scvi=False`` leaves scVI out, e.g. to rerun CFGen after a change: every generator is
    trained and scored on the same split with its own seed, so CFGen's and the simulator's rows
    are what they would be with scVI, and scVI's rows of an earlier run stay comparable.
    """
    adata = case.load(seed)
    effect = adata.uns["batch_effect"]
    split = hold_out(adata, case, seed)
    train = split.train
    in_baseline = (train.obs[LABEL] == case.cell_type) & (train.obs[BATCH] == case.seen_batch)
    baseline = train[in_baseline.to_numpy()]
    found = detectability(adata, split, case, seed)
    print(f"== {case.name} seed {seed}: {train.n_obs} training cells; {found}", flush=True)

    start = time.perf_counter()
    cfgen = GENERATORS["cfgen"]()
    cfgen_train = {"max_epochs": max_epochs} if max_epochs else None
    fit_cfgen(cfgen, train, seed, [LABEL, BATCH], train_kwargs=cfgen_train)
    seconds = {"CFGen": time.perf_counter() - start}
    epochs = {"CFGen": cfgen.epochs, "CFGen transfer": cfgen.epochs}
    scvi_model = None
    if with_scvi:
        start = time.perf_counter()
        scvi_model = SCVIBothCovariates()
        scvi_model.fit(train, seed, max_epochs)
        seconds["scVI transfer"] = seconds["scVI prior"] = time.perf_counter() - start
        epochs["scVI transfer"] = epochs["scVI prior"] = scvi_model.epochs
    simulator = NegativeBinomialSimulator()
    simulator.fit(train, seed)
    seconds["CFGen transfer"] = seconds["CFGen"]

    rows = []
    for combination, batch in (("unseen", case.held_batch), ("seen", case.seen_batch)):
        real, floor = split.held[combination]
        n = real.n_obs
        generated = [
            (
                ("CFGen", type_weight, batch_weight),
                cfgen.model.generate(
                    n_cells=n,
                    conditions={LABEL: case.cell_type, BATCH: batch},
                    guidance_weights={LABEL: type_weight, BATCH: batch_weight},
                    seed=seed,
                    progress_bar=False,
                ),
            )
            for type_weight, batch_weight in WEIGHTS
        ]
        chosen = source_cells(train, case, n, seed)
        generated += [
            (
                ("CFGen transfer", type_weight, batch_weight),
                cfgen.model.transfer(
                    cfgen.train_data,
                    to={BATCH: batch},
                    indices=chosen,
                    guidance_weights={LABEL: type_weight, BATCH: batch_weight},
                    seed=seed,
                    progress_bar=False,
                ),
            )
            for type_weight, batch_weight in TRANSFER_WEIGHTS
        ]
        if scvi_model is not None:
            generated += [
                (
                    ("scVI transfer", np.nan, np.nan),
                    scvi_model.transfer(case.cell_type, batch, chosen, seed),
                ),
                (
                    ("scVI prior", np.nan, np.nan),
                    scvi_model.prior(case.cell_type, batch, n, seed),
                ),
            ]
        generated.append(
            (
                ("NB simulator (type only)", np.nan, np.nan),
                simulator.generate(np.full(n, case.cell_type), seed),
            )
        )
        common = {"case": case.name, "seed": seed, "combination": combination, "n_real": n}
        for (generator, type_weight, batch_weight), cells in generated:
            scores, floor_scores = score(real, floor, cells, train, seed)
            rows.append(
                {
                    **common,
                    "generator": generator,
                    "type_weight": type_weight,
                    "batch_weight": batch_weight,
                    "train_seconds": round(seconds.get(generator, 0.0), 1),
                    "epochs": epochs.get(generator, ""),
                    "effect_slope": effect_slope(cells, baseline, effect),
                    **scores,
                }
            )
        # the floor sample is the same for every generator (same seed and size)
        floor_slope = effect_slope(real, baseline, effect)
        rows.append({**common, "generator": "floor", "effect_slope": floor_slope, **floor_scores})
    return pd.DataFrame(rows), {"case": case.name, "seed": seed, **found}


def finished(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    frame = pd.read_csv(path)
    return set(zip(frame["case"], frame["seed"], strict=True))


def append(frame: pd.DataFrame, path: Path) -> None:
    if path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    frame.to_csv(path, index=False)


def row_name(generator: str, type_weight: float, batch_weight: float) -> str:
    if not generator.startswith("CFGen"):
        return generator
    return f"{generator} w_type={type_weight:g} w_batch={batch_weight:g}"


def combination_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds per generator (and weight), with every score's ratio to the floor."""
    runs = runs.assign(
        row=[
            row_name(g, t, b)
            for g, t, b in zip(
                runs["generator"], runs["type_weight"], runs["batch_weight"], strict=True
            )
        ]
    )
    floors = runs[runs["generator"] == "floor"].set_index("seed")
    for metric in SCORED[1:]:
        runs[f"{metric}/floor"] = runs[metric] / floors.loc[runs["seed"], metric].to_numpy()
    order = list(dict.fromkeys(runs["row"]))
    shown = ["c2st_auc", "wasserstein2", "wasserstein2/floor", "zeros_w1/floor"]
    shown += ["log_mean_error/floor", "log_variance_error/floor", "effect_slope"]
    grouped = runs.groupby("row")
    table = pd.DataFrame(index=pd.Index(order, name="generator"))
    table["seeds"] = grouped.size()
    for column in shown:
        mean, sd = grouped[column].mean(), grouped[column].std(ddof=1)
        table[column] = [f"{mean[r]:.3f} ± {sd[r]:.3f}" for r in order]
    return table


def verdict(runs: pd.DataFrame, generator: str) -> str:
    """Weights at which ``generator``'s mean c2st and W2 are both below the simulator's."""
    unseen = runs[runs["combination"] == "unseen"]
    nb = unseen[unseen["generator"] == "NB simulator (type only)"]
    nb_c2st, nb_w2 = nb["c2st_auc"].mean(), nb["wasserstein2"].mean()
    nb_seed = nb.set_index("seed")
    wins = []
    rows = unseen[unseen["generator"] == generator]
    for (type_weight, batch_weight), group in rows.groupby(["type_weight", "batch_weight"]):
        c2st, w2 = group["c2st_auc"].mean(), group["wasserstein2"].mean()
        per_seed = group.set_index("seed")
        both = (
            (per_seed["c2st_auc"] < nb_seed.loc[per_seed.index, "c2st_auc"])
            & (per_seed["wasserstein2"] < nb_seed.loc[per_seed.index, "wasserstein2"])
        ).sum()
        if c2st < nb_c2st and w2 < nb_w2:
            wins.append(
                f"w_type={type_weight:g} w_batch={batch_weight:g} (c2st {c2st:.3f}, W2 "
                f"{w2:.2f}; both below in {both}/{len(group)} seeds)"
            )
    against = f"the type-only NB simulator (c2st {nb_c2st:.3f}, W2 {nb_w2:.2f})"
    if not wins:
        return f"{generator} does not beat {against} on both c2st and W2 at any weight."
    return f"{generator} beats {against} on both c2st and W2 at " + "; ".join(wins) + "."


def summarise(out: Path) -> str:
    runs = pd.read_csv(out / "runs.csv")
    found = pd.read_csv(out / "detectability.csv")
    parts = []
    for name in [c for c in CASES if c in set(runs["case"])]:
        case = CASES[name]
        in_case = runs[runs["case"] == name]
        seeds = sorted(int(s) for s in in_case["seed"].unique())
        batches = found[found["case"] == name]
        parts.append(
            f"### {name}: held out {case.cell_type} x {case.held_batch} (seeds {seeds})\n\n"
            f"Batches told apart within {case.cell_type} on real cells (AUC, mean over seeds): "
            f"10-NN c2st on the 30 PCs {batches['c2st_auc_pcs'].mean():.3f}, logistic "
            f"regression on all genes {batches['logistic_auc_genes'].mean():.3f} "
            f"({batches['n_seen_batch'].mean():.0f} vs {batches['n_held_batch'].mean():.0f} "
            "cells)."
        )
        for combination, batch in (("unseen", case.held_batch), ("seen", case.seen_batch)):
            subset = in_case[in_case["combination"] == combination]
            n = subset["n_real"].mean()
            parts.append(
                f"**{combination}: {case.cell_type} x {batch}** ({n:.0f} real cells scored, "
                "as many generated and floor cells)\n\n" + combination_table(subset).to_markdown()
            )
        parts.append(
            "Verdict (mean over seeds, unseen combination):\n\n"
            + "\n".join(f"- {verdict(in_case, g)}" for g in ("CFGen", "CFGen transfer"))
        )
    text = "\n\n".join(parts) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/composition"))
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument(
        "--no-scvi",
        action="store_true",
        help="leave scVI out, e.g. to rerun CFGen after a change in a new --out: CFGen and the "
        "simulator are seeded as with scVI, and scVI's rows of an earlier run stay comparable",
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="cap the epochs of CFGen's stages and of scVI (a quick check of the script only)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        done = finished(args.out / "runs.csv")
        for name in args.cases:
            for seed in args.seeds:
                if (name, seed) in done:
                    continue
                start = time.perf_counter()
                frame, found = run_seed(CASES[name], seed, args.max_epochs, not args.no_scvi)
                append(frame, args.out / "runs.csv")
                append(pd.DataFrame([found]), args.out / "detectability.csv")
                unseen = frame[frame["combination"] == "unseen"]
                print(
                    unseen[
                        [
                            "generator",
                            "type_weight",
                            "batch_weight",
                            "c2st_auc",
                            "wasserstein2",
                            "effect_slope",
                        ]
                    ]
                    .round(3)
                    .to_string(index=False),
                    f"\n{name} seed {seed}: {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    print(summarise(args.out))


if __name__ == "__main__":
    main()
