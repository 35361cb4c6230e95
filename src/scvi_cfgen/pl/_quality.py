"""Plots of count properties and of evaluation scores next to their floor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scvi_cfgen.metrics import METRICS, compare_to_floor, gene_mean_variance, zero_fractions


def _named_sets(real, generated) -> dict[str, object]:
    if isinstance(generated, dict):
        return {"real": real, **generated}
    return {"real": real, "generated": generated}


def mean_variance(real, generated, title: str | None = None):
    """Per-gene mean against variance of raw counts, real and generated, on log-log axes.

    Parameters
    ----------
    real
        Real raw counts (AnnData or cells x genes matrix).
    generated
        Generated raw counts with the same genes, or a dict ``{name: counts}`` of several
        generators.
    title
        Figure title.

    Returns
    -------
    The matplotlib figure. The dashed line is the Poisson variance (= mean); over-dispersed
    genes lie above it.
    """
    import matplotlib.pyplot as plt

    sets = _named_sets(real, generated)
    figure, axes = plt.subplots(
        1, len(sets) - 1, figsize=(5 * (len(sets) - 1), 4.5), squeeze=False
    )
    mean_real, var_real = gene_mean_variance(real)
    keep_real = (mean_real > 0) & (var_real > 0)
    for axis, (name, counts) in zip(axes[0], list(sets.items())[1:], strict=True):
        mean, var = gene_mean_variance(counts)
        keep = (mean > 0) & (var > 0)
        axis.scatter(
            mean_real[keep_real],
            var_real[keep_real],
            s=3,
            alpha=0.4,
            color="tab:grey",
            label="real",
            rasterized=True,
        )
        axis.scatter(
            mean[keep], var[keep], s=3, alpha=0.4, color="tab:red", label=name, rasterized=True
        )
        low = min(mean_real[keep_real].min(), mean[keep].min())
        high = max(mean_real[keep_real].max(), mean[keep].max())
        axis.plot([low, high], [low, high], "k--", linewidth=0.8, label="Poisson")
        axis.set(xscale="log", yscale="log", xlabel="gene mean", ylabel="gene variance")
        axis.set_title(name)
        axis.legend(markerscale=4, frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def zeros_histogram(real, generated, bins: int = 40, title: str | None = None):
    """Histogram of the per-cell fraction of zero counts, real and generated overlaid.

    Parameters
    ----------
    real
        Real raw counts (AnnData or cells x genes matrix).
    generated
        Generated raw counts with the same genes, or a dict ``{name: counts}``.
    bins
        Number of bins over the joint range.
    title
        Figure title.
    """
    import matplotlib.pyplot as plt

    fractions = {
        name: zero_fractions(counts) for name, counts in _named_sets(real, generated).items()
    }
    low = min(f.min() for f in fractions.values())
    high = max(f.max() for f in fractions.values())
    edges = np.linspace(low, high, bins + 1)
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in fractions.items():
        axis.hist(values, bins=edges, density=True, histtype="step", linewidth=1.5, label=name)
    axis.set(xlabel="fraction of zero counts per cell", ylabel="density")
    axis.legend(frameon=False)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def metrics_vs_floor(
    results: pd.DataFrame, metrics: Sequence[str] = METRICS, label: str = "overall"
):
    """Bar chart of each metric for every generator next to the real-vs-real floor.

    Parameters
    ----------
    results
        Output of :func:`scvi_cfgen.metrics.evaluate` with a floor; several runs may be
        concatenated with ``generator`` (and e.g. ``seed``) columns, which are averaged with
        their standard deviation as error bars.
    metrics
        Metrics to show, one panel each.
    label
        Row of the results to show (a label, or ``"overall"``).
    """
    import matplotlib.pyplot as plt

    if "generator" not in results:
        results = results.assign(generator="generated")
    compared = compare_to_floor(results)
    compared = compared[(compared["label"] == label) & compared["metric"].isin(metrics)]
    if compared.empty:
        raise ValueError(f"No scores for label {label!r} in `results`.")
    generators = list(dict.fromkeys(compared["generator"]))
    figure, axes = plt.subplots(1, len(metrics), figsize=(2.3 * len(metrics), 3.6), squeeze=False)
    colours = plt.get_cmap("tab10")(np.arange(len(generators)))
    for axis, metric in zip(axes[0], metrics, strict=True):
        scores = compared[compared["metric"] == metric]
        floor = scores["floor"]
        values = [scores.loc[scores["generator"] == g, "value"] for g in generators]
        axis.bar(
            range(len(generators)),
            [v.mean() for v in values],
            yerr=[v.std(ddof=1) if len(v) > 1 else 0 for v in values],
            color=colours,
        )
        axis.axhline(floor.mean(), color="k", linestyle="--", linewidth=1, label="floor")
        axis.set_title(metric, fontsize=9)
        axis.set_xticks(range(len(generators)), generators, rotation=60, ha="right", fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
    axes[0][0].legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return figure
