"""Which part of CFGen limits the quality scores: the autoencoder, the size factors or the latent
flow? Runs on any case of ``benchmarks/generalisation.py`` (default PBMC3k) with the split of
``benchmarks/quality.py`` (seed 0 by default).

Scores against the test cells, with the same floor and PC space as the benchmark:

- ``generated``: cells generated for the test labels (what the benchmark scores);
- ``reconstructed``: test cells encoded and decoded, NB counts drawn with their own library
  (the best the autoencoder can do for these cells);
- ``reconstructed, sampled library``: the same latents, libraries drawn from the training
  log-normal law of the cell type (adds the size-factor model);
- ``flow latents, observed library``: generated latents decoded with libraries of real test
  cells of the same type;
- ``training latents, observed library``: latents of training cells of the same type (what
  the flow learns) decoded with the test cells' libraries. Far above ``reconstructed``, the
  encoder places the cells it was trained on differently from unseen cells (it overfits), and
  a flow that learns the training latents perfectly still scores this;
- ``per-type Gaussian latents, observed library``: latents drawn from a Gaussian per type
  (mean and Ledoit-Wolf covariance of the type's training latents) in place of the flow: the
  parametric latent model a flow should beat.

and, in the latent space itself, c2st of generated latents vs encoded test latents next to
encoded training latents vs encoded test latents. It also compares the fitted NB inverse
dispersions with the NB simulator's per-label moment estimates (median over genes of the
log ratio) and the generated library sizes with the real ones (quantiles).

Run: ``python benchmarks/quality_diagnostics.py [--case pbmc3k] [--seed 0] [--model DIR]
[--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from generalisation import CASES, EXTRA_CASES, load_case
from quality import LABEL, NegativeBinomialSimulator, as_counts, split
from sklearn.covariance import LedoitWolf

import scvi_cfgen
from scvi_cfgen import metrics


def encoded(model, adata) -> np.ndarray:
    return model.get_latent_representation(adata)


@torch.inference_mode()
def decode(model, z: np.ndarray, library: np.ndarray, labels, seed: int, like):
    torch.manual_seed(seed)
    module = model.module
    names = list(model.attribute_categories)
    codes = None
    if module.dispersion_attribute_index is not None:
        categories = list(model.attribute_categories[names[module.dispersion_attribute_index]])
        codes = torch.tensor([categories.index(label) for label in labels])
    counts = module.autoencoder.sample_counts(
        torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(library).float(), codes
    )
    return as_counts(counts.numpy(), like, np.asarray(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="pbmc3k", choices=CASES + EXTRA_CASES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/quality_diagnostics"))
    parser.add_argument(
        "--model-kwargs", type=json.loads, default={}, help="CFGenModel keywords, as JSON"
    )
    parser.add_argument(
        "--train-kwargs", type=json.loads, default={}, help="CFGenModel.train keywords, as JSON"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seed = args.seed
    adata = load_case(args.case)
    train, test, reference, floor_pool = split(adata, seed)
    attributes = [LABEL, "batch"] if "batch" in train.obs else [LABEL]
    scvi_cfgen.CFGenModel.setup_anndata(train, categorical_covariate_keys=attributes)
    if args.model is not None and args.model.exists():
        model = scvi_cfgen.CFGenModel.load(args.model, adata=train)
    else:
        import scvi

        scvi.settings.seed = seed
        model = scvi_cfgen.CFGenModel(train, **args.model_kwargs)
        start = time.perf_counter()
        model.train(enable_progress_bar=False, **args.train_kwargs)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
        model.save(args.out / "model", overwrite=True)
    for stage in ("autoencoder", "flow"):
        validation = model.history[f"validation_loss_{stage}"].iloc[:, 0]
        print(
            f"{stage}: {len(validation)} epochs, best validation loss {validation.min():.4g} at "
            f"epoch {int(validation.to_numpy().argmin()) + 1}",
            flush=True,
        )
    labels = test.obs[LABEL].astype(str).to_numpy()
    rng = np.random.default_rng(seed)

    generated = model.generate(conditions=pd.DataFrame({LABEL: labels}), seed=seed)
    generated.obs[LABEL] = generated.obs[LABEL].astype(str)
    z_test = encoded(model, test)
    observed = np.asarray(test.X.sum(axis=1)).ravel()
    train_log = np.log(np.asarray(train.X.sum(axis=1)).ravel())
    train_labels = train.obs[LABEL].astype(str).to_numpy()
    sampled = np.array(
        [
            np.exp(
                rng.normal(
                    train_log[train_labels == lab].mean(), train_log[train_labels == lab].std()
                )
            )
            for lab in labels
        ]
    )
    module = model.module
    names = list(model.attribute_categories)
    categories = list(model.attribute_categories[LABEL])
    codes = torch.full((len(labels), len(names)), -1, dtype=torch.long)
    codes[:, names.index(LABEL)] = torch.tensor([categories.index(lab) for lab in labels])
    torch.manual_seed(seed)
    with torch.inference_mode():
        noise = torch.randn(len(labels), module.n_latent)
        weights = (codes >= 0).float()
        size = module.size_factor_condition(torch.log(torch.as_tensor(sampled).float()))
        flow_latents = module.sample_latent(noise, codes, weights, size).numpy()
    shuffled_observed = observed.copy()
    for lab in np.unique(labels):
        where = np.flatnonzero(labels == lab)
        shuffled_observed[where] = rng.permutation(observed[where])
    z_train = encoded(model, train)
    train_labels_index = {
        lab: np.flatnonzero(train_labels == lab)
        if (train_labels == lab).any()
        else np.arange(len(train_labels))
        for lab in np.unique(labels)
    }
    training_partner = np.array([rng.choice(train_labels_index[lab]) for lab in labels])

    gaussian_latents = np.empty_like(flow_latents)
    for lab in np.unique(labels):
        where = np.flatnonzero(labels == lab)
        type_latents = z_train[train_labels_index[lab]]
        covariance = (
            LedoitWolf().fit(type_latents).covariance_
            if len(type_latents) > 1
            else np.eye(type_latents.shape[1])
        )
        gaussian_latents[where] = rng.multivariate_normal(
            type_latents.mean(0), covariance, len(where)
        )

    sets = {
        "generated": generated,
        "reconstructed": decode(model, z_test, observed, labels, seed, train),
        "reconstructed, sampled library": decode(model, z_test, sampled, labels, seed, train),
        "flow latents, observed library": decode(
            model, flow_latents, shuffled_observed, labels, seed, train
        ),
        "training latents, observed library": decode(
            model, z_train[training_partner], shuffled_observed, labels, seed, train
        ),
        "per-type Gaussian latents, observed library": decode(
            model, gaussian_latents, shuffled_observed, labels, seed, train
        ),
    }
    tables = []
    for name, cells in sets.items():
        scores = metrics.evaluate(
            test, cells, LABEL, reference=reference, floor=floor_pool, seed=seed
        )
        tables.append(scores.assign(generator=name))
    scores = pd.concat(tables, ignore_index=True)
    scores.to_csv(args.out / "scores.csv", index=False)
    overall = scores[scores["label"] == "overall"]
    floor = overall[overall["set"] == "floor"].iloc[:1].assign(generator="floor")
    table = pd.concat([floor, overall[overall["set"] == "generated"]])
    print(table.set_index("generator")[list(metrics.METRICS)].round(4).to_markdown())

    rows = []
    for lab in np.unique(labels):
        in_test = labels == lab
        if in_test.sum() < 10:
            continue
        pool = np.flatnonzero(train_labels == lab)
        same_size = rng.choice(pool, size=min(in_test.sum(), len(pool)), replace=False)
        training_spread = np.trace(np.cov(z_train[pool].T))
        rows.append(
            {
                "label": lab,
                "c2st generated latents": metrics.c2st_auc(z_test[in_test], flow_latents[in_test]),
                "c2st training latents": metrics.c2st_auc(z_test[in_test], z_train[same_size]),
                "c2st Gaussian latents": metrics.c2st_auc(
                    z_test[in_test], gaussian_latents[in_test]
                ),
                "spread generated / training": float(
                    np.trace(np.cov(flow_latents[in_test].T)) / training_spread
                ),
                "spread test / training": float(
                    np.trace(np.cov(z_test[in_test].T)) / training_spread
                ),
            }
        )
    latent = pd.DataFrame(rows)
    latent.loc[len(latent)] = ["overall", *latent.iloc[:, 1:].mean()]
    latent.to_csv(args.out / "latent_c2st.csv", index=False)
    print(latent.round(3).to_markdown(index=False))

    simulator = NegativeBinomialSimulator()
    simulator.fit(train, seed)
    log_theta = module.autoencoder.log_theta.detach().numpy()
    theta_rows = []
    for lab in np.unique(labels):
        if (train_labels == lab).sum() < 30:  # moment estimates of a few cells mean little
            continue
        proportion, theta = simulator.params[lab]
        expressed = proportion * np.exp(simulator.library[lab][0]) > 0.1
        row = log_theta[categories.index(lab)] if log_theta.shape[0] > 1 else log_theta[0]
        theta_rows.append(
            {
                "label": lab,
                "genes (mean > 0.1)": int(expressed.sum()),
                "median log(theta_model / theta_moments)": float(
                    np.median(row[expressed] - np.log(theta[expressed]))
                ),
            }
        )
    print(pd.DataFrame(theta_rows).round(3).to_markdown(index=False))
    quantiles = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    libraries = pd.DataFrame(
        {
            "real test": np.quantile(observed, quantiles),
            "generated": np.quantile(generated.obs["size_factor"], quantiles),
            "generated (counts)": np.quantile(np.asarray(generated.X.sum(axis=1)), quantiles),
        },
        index=quantiles,
    )
    print("library size quantiles\n" + libraries.round(0).to_markdown())


if __name__ == "__main__":
    main()
