"""Distances between two sets of cells in a shared embedding (e.g. 30 principal components)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot

#: Inverse squared bandwidths ``gamma`` of the RBF kernels ``exp(-gamma * |x - y|^2)`` that
#: :func:`rbf_mmd` averages over: a wide fixed range, as in CellOT's and CFGen's evaluations, so
#: results stay comparable across data sets and generators.
DEFAULT_MMD_GAMMAS: tuple[float, ...] = (2.0, 1.0, 0.5, 0.1, 0.01, 0.005)


def _as_points(x, name: str) -> np.ndarray:
    points = np.asarray(x, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of cells x dimensions, got {points.ndim}-D."
        )
    if not np.isfinite(points).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return points


def _pair(x, y, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_points(x, "x"), _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` and `y` must live in the same space: {x.shape[1]} vs {y.shape[1]} dimensions."
        )
    if len(x) < minimum or len(y) < minimum:
        raise ValueError(f"Need at least {minimum} cells in each set, got {len(x)} and {len(y)}.")
    return x, y


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(ot.dist(a, b, metric="sqeuclidean"), 0.0)


def rbf_mmd(x, y, gammas: Sequence[float] = DEFAULT_MMD_GAMMAS) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy with RBF kernels.

    The kernel is ``exp(-gamma * |a - b|^2)``; the estimate is averaged over ``gammas``. The
    unbiased (U-statistic) form leaves out every cell's kernel with itself, so two samples of one
    distribution score about 0 whatever their sizes (the biased form adds a term of order
    ``1 / n`` that dominates small cell types). It can therefore be slightly negative.

    Parameters
    ----------
    x, y
        Cells x dimensions arrays in the same space, at least 2 cells each.
    gammas
        Inverse squared bandwidths, averaged over.
    """
    x, y = _pair(x, y, minimum=2)
    if len(gammas) == 0 or any(g <= 0 for g in gammas):
        raise ValueError("`gammas` must be a non-empty sequence of positive numbers.")
    d_xx, d_yy, d_xy = _squared_distances(x, x), _squared_distances(y, y), _squared_distances(x, y)
    m, n = len(x), len(y)
    values = []
    for gamma in gammas:
        k_xx, k_yy = np.exp(-gamma * d_xx), np.exp(-gamma * d_yy)
        within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        values.append(within_x + within_y - 2 * np.exp(-gamma * d_xy).mean())
    return float(np.mean(values))


def linear_mmd(x, y) -> float:
    """Linear-kernel MMD: the squared Euclidean distance between the two sets' means.

    It depends only on the means, not on how the cells are ordered or paired.
    """
    x, y = _pair(x, y, minimum=1)
    return float(np.sum((x.mean(axis=0) - y.mean(axis=0)) ** 2))


def wasserstein2(x, y, max_iterations: int = 1_000_000) -> float:
    """Exact Wasserstein-2 distance between two sets of cells with uniform weights.

    Solved as an exact optimal-transport problem with POT (``ot.emd2``) on squared Euclidean
    costs; the square root of the optimal cost is returned.

    Parameters
    ----------
    x, y
        Cells x dimensions arrays in the same space.
    max_iterations
        Iteration limit of the network-simplex solver.
    """
    x, y = _pair(x, y, minimum=1)
    weights_x = np.full(len(x), 1.0 / len(x))
    weights_y = np.full(len(y), 1.0 / len(y))
    cost = ot.emd2(weights_x, weights_y, _squared_distances(x, y), numItermax=max_iterations)
    return float(np.sqrt(max(cost, 0.0)))
