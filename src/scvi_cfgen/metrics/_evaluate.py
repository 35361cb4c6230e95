"""One call that scores generated cells against real ones, label by label, next to a floor."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin

from scvi_cfgen._validation import validate_counts

from ._classifiers import c2st_auc, knn_f1
from ._counts import _log_moment_errors, zeros_wasserstein
from ._distances import DEFAULT_MMD_GAMMAS, linear_mmd, rbf_mmd, wasserstein2
from ._embedding import PCAProjection

#: Columns of :func:`evaluate`'s output that hold metrics, in display order.
METRICS: tuple[str, ...] = (
    "c2st_auc",
    "rbf_mmd",
    "wasserstein2",
    "linear_mmd",
    "knn_f1",
    "zeros_w1",
    "log_mean_error",
    "log_variance_error",
)
#: Metrics for which higher is better; for all others lower is better.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"knn_f1"})
OVERALL = "overall"


def _counts(adata: ad.AnnData, layer: str | None):
    return adata.X if layer is None else adata.layers[layer]


def _check_inputs(
    named: dict[str, ad.AnnData | None], label_key: str | None, layer, counts: bool = True
) -> None:
    genes = named["real"].var_names
    for name, adata in named.items():
        if adata is None:
            continue
        if not isinstance(adata, ad.AnnData):
            raise ValueError(f"`{name}` must be an AnnData of raw counts, got {type(adata)}.")
        if adata.n_obs == 0:
            raise ValueError(f"`{name}` has no cells.")
        if layer is not None and layer not in adata.layers:
            raise ValueError(f"Layer {layer!r} is missing from `{name}`.")
        if not adata.var_names.equals(genes):
            raise ValueError(
                f"`{name}` must have the same genes in the same order as `real`; subset both "
                "with `adata[:, real.var_names]` first."
            )
        if label_key is not None and name != "reference" and label_key not in adata.obs:
            raise ValueError(f"`{name}.obs` has no column {label_key!r} (`label_key`).")
        if counts:
            try:
                validate_counts(_counts(adata, layer), f"`{name}`", allow_empty_cells=True)
            except ValueError as error:
                raise ValueError(
                    f"{error} `evaluate` normalises and log-transforms raw counts itself; if "
                    "the data are deliberately not counts, pass `counts=False`."
                ) from None


def _labels(adata: ad.AnnData, label_key: str | None) -> np.ndarray:
    if label_key is None:
        return np.full(adata.n_obs, OVERALL)
    return adata.obs[label_key].astype(str).to_numpy()


def floor_sample(
    pool: ad.AnnData, like: ad.AnnData, label_key: str | None = None, seed: int = 0
) -> ad.AnnData:
    """Real cells, drawn without replacement from ``pool``, with the label sizes of ``like``.

    Scored with :func:`evaluate` in place of generated cells, they give the *floor*: what a
    perfect generator, one that returns fresh real cells, would score on the same metrics at the
    same sample sizes. ``pool`` must not share cells with the real cells compared against.
    Labels that ``pool`` has fewer cells of are drawn in full.
    """
    rng = np.random.default_rng(seed)
    pool_labels, wanted = _labels(pool, label_key), _labels(like, label_key)
    chosen = []
    for label, n_wanted in zip(*np.unique(wanted, return_counts=True), strict=True):
        available = np.flatnonzero(pool_labels == label)
        chosen.append(rng.choice(available, size=min(n_wanted, len(available)), replace=False))
    return pool[np.sort(np.concatenate(chosen))].copy()


def _subsample(indices: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    if len(indices) <= max_cells:
        return indices
    return np.sort(rng.choice(indices, size=max_cells, replace=False))


def _score_set(
    real: ad.AnnData,
    compared: ad.AnnData,
    real_embedding: np.ndarray,
    compared_embedding: np.ndarray,
    label_key: str | None,
    layer: str | None,
    settings: dict,
) -> pd.DataFrame:
    rng = np.random.default_rng(settings["seed"])
    real_labels, compared_labels = _labels(real, label_key), _labels(compared, label_key)
    if label_key is not None:
        f1 = knn_f1(
            real_embedding,
            real_labels,
            compared_embedding,
            compared_labels,
            n_neighbors=settings["n_neighbors"],
        )
    rows = []
    for label in np.unique(real_labels):
        in_real = np.flatnonzero(real_labels == label)
        in_compared = np.flatnonzero(compared_labels == label)
        if min(len(in_real), len(in_compared)) < settings["min_cells"]:
            continue
        in_real = _subsample(in_real, settings["max_cells"], rng)
        in_compared = _subsample(in_compared, settings["max_cells"], rng)
        x, y = real_embedding[in_real], compared_embedding[in_compared]
        counts_real = _counts(real, layer)[in_real]
        counts_compared = _counts(compared, layer)[in_compared]
        mean_error, variance_error = _log_moment_errors(counts_real, counts_compared)
        rows.append(
            {
                "label": label,
                "n_real": len(in_real),
                "n_cells": len(in_compared),
                "c2st_auc": c2st_auc(
                    x, y, classifier=settings["c2st_classifier"], seed=settings["seed"]
                ),
                "rbf_mmd": rbf_mmd(x, y, gammas=settings["gammas"]),
                "wasserstein2": wasserstein2(x, y),
                "linear_mmd": linear_mmd(x, y),
                "knn_f1": f1[label] if label_key is not None else np.nan,
                "zeros_w1": zeros_wasserstein(counts_real, counts_compared),
                "log_mean_error": mean_error,
                "log_variance_error": variance_error,
            }
        )
    if not rows:
        raise ValueError(
            f"No label has at least {settings['min_cells']} cells in both sets; lower "
            "`min_cells` or compare larger sets."
        )
    table = pd.DataFrame(rows)
    if label_key is not None:
        overall = {"label": OVERALL, "n_real": table["n_real"].sum()}
        overall["n_cells"] = table["n_cells"].sum()
        overall.update(table[list(METRICS)].mean())
        table = pd.concat([table, pd.DataFrame([overall])], ignore_index=True)
    return table


def evaluate(
    real: ad.AnnData,
    generated: ad.AnnData,
    label_key: str | None = None,
    reference: ad.AnnData | None = None,
    floor: ad.AnnData | None = None,
    n_pcs: int = 30,
    n_neighbors: int = 10,
    min_cells: int = 10,
    max_cells: int = 2_000,
    gammas: Sequence[float] = DEFAULT_MMD_GAMMAS,
    c2st_classifier: ClassifierMixin | None = None,
    layer: str | None = None,
    seed: int = 0,
    counts: bool = True,
) -> pd.DataFrame:
    """Score generated cells against real cells, per label, optionally next to a real floor.

    Counts are normalised to 1e4 per cell and ``log1p``-transformed, then projected on ``n_pcs``
    principal components fitted on ``reference``. Real, generated and floor cells are all
    projected out of sample with the reference means and loadings, so none of them is favoured
    by the fit. Per label (labels with at least ``min_cells`` cells in both sets):

    - ``c2st_auc``: :func:`~scvi_cfgen.metrics.c2st_auc` (0.5 = indistinguishable);
    - ``rbf_mmd``: unbiased RBF-kernel MMD (:func:`~scvi_cfgen.metrics.rbf_mmd`);
    - ``wasserstein2``: exact W2 (:func:`~scvi_cfgen.metrics.wasserstein2`);
    - ``linear_mmd``: squared distance of the means (:func:`~scvi_cfgen.metrics.linear_mmd`);
    - ``knn_f1``: F1 of the label under a ``n_neighbors``-NN classifier fitted on the real
      cells (:func:`~scvi_cfgen.metrics.knn_f1`);
    - on raw counts: ``zeros_w1`` (:func:`~scvi_cfgen.metrics.zeros_wasserstein`),
      ``log_mean_error`` and ``log_variance_error``
      (:func:`~scvi_cfgen.metrics.log_variance_error`).

    The ``"overall"`` row averages the labels (for ``knn_f1`` that is the macro F1).

    Parameters
    ----------
    real
        Real cells to compare against (e.g. held-out test cells), raw counts.
    generated
        Generated cells with the same genes, raw counts.
    label_key
        Column of ``obs`` (in ``real``, ``generated`` and ``floor``) holding the labels, e.g.
        cell types. Without it, all cells form one group and ``knn_f1`` is not computed.
    reference
        Real cells, disjoint from ``real``, ``generated`` and ``floor`` (e.g. part of the
        training data), that define the PC space. Without it the space is fitted on ``real``,
        which makes every out-of-sample set look further from ``real`` than it is (a warning says
        so).
    floor
        A pool of real cells disjoint from ``real`` and ``reference``. A sample of it with the
        label sizes of ``generated`` (:func:`floor_sample`) is scored like the generated cells,
        in rows with ``set == "floor"``.
    n_pcs
        Number of principal components.
    n_neighbors
        Neighbours of the label classifier.
    min_cells
        Labels with fewer cells in either set are skipped.
    max_cells
        Labels with more cells in a set are subsampled to this many for the metrics (the MMD
        and the exact W2 grow quadratically and cubically with the number of cells).
    gammas
        RBF kernel parameters of the MMD.
    c2st_classifier
        Classifier of the two-sample test (default: distance-weighted 10-NN).
    layer
        Layer holding raw counts in every AnnData (default ``X``).
    seed
        Seed of subsampling, the floor sample and cross-validation folds.
    counts
        The inputs hold raw counts (the default): negative, non-integer or NaN values raise a
        ``ValueError``. ``False`` scores whatever the matrices hold (they are still normalised
        and log-transformed).

    Returns
    -------
    A tidy DataFrame: columns ``set`` (``"generated"`` or ``"floor"``), ``label``, ``n_real``,
    ``n_cells`` and one column per metric (see :data:`METRICS`).
    """
    _check_inputs(
        {"real": real, "generated": generated, "reference": reference, "floor": floor},
        label_key,
        layer,
        counts,
    )
    if min_cells < 2:
        raise ValueError(f"`min_cells` must be at least 2, got {min_cells}.")
    if reference is None:
        warnings.warn(
            "No `reference` given: the PC space is fitted on `real` itself, which favours `real` "
            "over any out-of-sample set. Pass real cells not otherwise compared (e.g. part of "
            "the training data) as `reference`.",
            UserWarning,
            stacklevel=2,
        )
        reference = real
    projection = PCAProjection(_counts(reference, layer), n_components=n_pcs, seed=seed)
    real_embedding = projection.transform(_counts(real, layer))
    settings = {
        "n_neighbors": n_neighbors,
        "min_cells": min_cells,
        "max_cells": max_cells,
        "gammas": gammas,
        "c2st_classifier": c2st_classifier,
        "seed": seed,
    }
    compared = {"generated": generated}
    if floor is not None:
        compared["floor"] = floor_sample(floor, like=generated, label_key=label_key, seed=seed)
    tables = []
    for name, cells in compared.items():
        embedding = projection.transform(_counts(cells, layer))
        table = _score_set(real, cells, real_embedding, embedding, label_key, layer, settings)
        tables.append(table.assign(set=name))
    result = pd.concat(tables, ignore_index=True)
    return result[["set", "label", "n_real", "n_cells", *METRICS]]


def compare_to_floor(results: pd.DataFrame) -> pd.DataFrame:
    """Put every generated score next to its floor: one row per label and metric.

    Parameters
    ----------
    results
        Output of :func:`evaluate` called with ``floor``, optionally several concatenated with
        ``generator`` and ``seed`` columns (each generator is matched with the floor of its
        seed).

    Returns
    -------
    Columns ``[generator, seed,] label, metric, value, floor, ratio`` where ``ratio`` is
    ``value / floor`` (for ``c2st_auc`` and ``knn_f1``, whose perfect score is not 0, read the
    difference instead).
    """
    if "floor" not in set(results["set"]):
        raise ValueError("`results` has no floor rows: call `evaluate(..., floor=...)`.")
    keys = [key for key in ("generator", "seed") if key in results] + ["label"]
    long = results.melt(id_vars=["set", *keys], value_vars=list(METRICS), var_name="metric")
    generated = long[long["set"] == "generated"].drop(columns="set")
    floor_keys = [key for key in keys if key != "generator"] + ["metric"]
    floor = long[long["set"] == "floor"].groupby(floor_keys, as_index=False)["value"].mean()
    merged = generated.merge(floor.rename(columns={"value": "floor"}), on=floor_keys)
    merged["ratio"] = merged["value"] / merged["floor"]
    return merged.reset_index(drop=True)
