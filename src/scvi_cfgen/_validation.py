"""Checks run on user data before any training time is spent."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

_CHUNK_ROWS = 10_000


def _row_chunks(matrix, chunk_rows: int = _CHUNK_ROWS) -> Iterator[tuple[int, object]]:
    for start in range(0, matrix.shape[0], chunk_rows):
        yield start, matrix[start : start + chunk_rows]


def _values(chunk) -> np.ndarray:
    if sp.issparse(chunk):
        return np.asarray(chunk.data)
    return np.asarray(chunk)


def row_sums(matrix, chunk_rows: int = _CHUNK_ROWS) -> np.ndarray:
    """Total counts of every row, computed chunk by chunk (dense, sparse or backed)."""
    sums = np.empty(matrix.shape[0], dtype=np.float64)
    for start, chunk in _row_chunks(matrix, chunk_rows):
        sums[start : start + chunk.shape[0]] = np.asarray(chunk.sum(axis=1)).ravel()
    return sums


def validate_counts(
    matrix, where: str, layer_argument: str = "layer", allow_empty_cells: bool = False
) -> None:
    """Reject data that are not raw counts, chunk by chunk, without copying the matrix.

    Parameters
    ----------
    matrix
        Cells x features matrix: dense, scipy sparse or an h5py-backed dataset.
    where
        Name of the matrix in messages, e.g. ``"adata.X"`` or ``"adata.layers['counts']"``.
    layer_argument
        Name of the setup argument that selects the layer, for the suggested fix.
    allow_empty_cells
        Accept cells without counts (ATAC peaks: a cell may have no accessible peak in the
        selected set, and peaks have no size factor).

    Raises
    ------
    ValueError
        On NaN or infinite values, negative or non-integer values, or (unless allowed) cells with
        no counts.
    """
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{where} is empty ({matrix.shape[0]} cells x {matrix.shape[1]} features)."
        )
    empty_cells: list[int] = []
    for start, chunk in _row_chunks(matrix):
        values = _values(chunk)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"{where} contains NaN or infinite values. CFGen models raw counts: "
                "remove or impute those entries before calling setup."
            )
        if values.size and values.min() < 0:
            raise ValueError(
                f"{where} contains negative values, so it does not hold raw counts. "
                f"Pass the raw count matrix (e.g. `{layer_argument}='counts'`) instead of "
                "normalised data."
            )
        if values.size and not np.array_equal(values, np.round(values)):
            raise ValueError(
                f"{where} contains non-integer values, so it does not hold raw counts "
                "(normalised or log-transformed data?). Pass the raw UMI counts, "
                f"e.g. `{layer_argument}='counts'`."
            )
        if allow_empty_cells:
            continue
        sums = np.asarray(chunk.sum(axis=1)).ravel()
        empty_cells.extend((start + np.flatnonzero(sums == 0)).tolist())
    if empty_cells:
        shown = ", ".join(map(str, empty_cells[:5]))
        raise ValueError(
            f"{where} has {len(empty_cells)} cell(s) with zero total counts (row positions "
            f"{shown}{'...' if len(empty_cells) > 5 else ''}). Their size factor is undefined; "
            "filter them first, e.g. `sc.pp.filter_cells(adata, min_counts=1)`."
        )
