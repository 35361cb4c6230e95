"""Checks run on user data before any training time is spent."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from anndata.abc import CSCDataset, CSRDataset

#: Rows read at a time by every pass over a whole count matrix (read at call time).
CHUNK_ROWS = 10_000
#: At most this many values per block of a dense matrix (40 MB of float32), however wide.
DENSE_CHUNK_VALUES = 10_000_000


def row_chunks(matrix, chunk_rows: int | None = None) -> Iterator[tuple[int, object]]:
    """``(first row, rows)`` of consecutive blocks of rows.

    Blocks have ``chunk_rows`` rows (default ``CHUNK_ROWS``), fewer for a dense matrix so that a
    block holds at most ``DENSE_CHUNK_VALUES`` values. Each block is read on its own, so a
    backed matrix is never loaded whole.
    """
    chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
    if not (sp.issparse(matrix) or isinstance(matrix, CSRDataset | CSCDataset)):
        chunk_rows = min(chunk_rows, max(1, DENSE_CHUNK_VALUES // max(1, matrix.shape[1])))
    for start in range(0, matrix.shape[0], chunk_rows):
        yield start, matrix[start : start + chunk_rows]


def require_row_access(matrix, where: str) -> None:
    """Reject backed matrices whose rows (cells) cannot be read without reading all of them.

    Raises
    ------
    ValueError
        ``matrix`` is a backed CSC matrix: each minibatch of cells would read the whole file.
    """
    if isinstance(matrix, CSCDataset):
        raise ValueError(
            f"{where} is stored on disk as a CSC (column-compressed) matrix, so reading a "
            "minibatch of cells from the backed file reads every column of it. Store the counts "
            "as CSR (one row per cell) once, e.g. `adata = anndata.read_h5ad(path); adata.X = "
            "adata.X.tocsr(); adata.write_h5ad(path)`, then read it with `backed='r'`."
        )


def _values(chunk) -> np.ndarray:
    if sp.issparse(chunk):
        return np.asarray(chunk.data)
    return np.asarray(chunk)


def row_sums(matrix, chunk_rows: int | None = None) -> np.ndarray:
    """Total counts of every row, computed chunk by chunk (dense, sparse or backed)."""
    sums = np.empty(matrix.shape[0], dtype=np.float64)
    for start, chunk in row_chunks(matrix, chunk_rows):
        sums[start : start + chunk.shape[0]] = np.asarray(chunk.sum(axis=1)).ravel()
    return sums


def _bad_rows(chunk, bad_values: np.ndarray) -> np.ndarray:
    """Row positions (within ``chunk``) of the entries flagged in ``bad_values``."""
    if sp.issparse(chunk):
        csr = sp.csr_matrix(chunk)
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        return np.unique(rows[bad_values])
    return np.flatnonzero(np.asarray(bad_values).reshape(chunk.shape[0], -1).any(axis=1))


def _name_cells(rows: list[int], cell_names) -> str:
    shown = [repr(str(cell_names[r])) if cell_names is not None else str(r) for r in rows[:5]]
    kind = "cells" if cell_names is not None else "row positions"
    return f"{len(rows)} cell(s): {kind} {', '.join(shown)}{'...' if len(rows) > 5 else ''}"


def validate_counts(
    matrix,
    where: str,
    layer_argument: str = "layer",
    allow_empty_cells: bool = False,
    cell_names=None,
) -> None:
    """Reject data that are not raw counts, chunk by chunk, without copying the matrix.

    Parameters
    ----------
    matrix
        Cells x features matrix: dense, scipy sparse, or backed (CSR or dense; read
        ``CHUNK_ROWS`` rows at a time).
    where
        Name of the matrix in messages, e.g. ``"adata.X"`` or ``"adata.layers['counts']"``.
    layer_argument
        Name of the setup argument that selects the layer, for the suggested fix.
    allow_empty_cells
        Accept cells without counts (ATAC peaks: a cell may have no accessible peak in the
        selected set, and peaks have no size factor).
    cell_names
        Names of the rows, used to name offending cells (row positions otherwise).

    Raises
    ------
    ValueError
        On NaN or infinite values, negative or non-integer values, (unless allowed) cells with
        no counts, or a backed CSC matrix.
    """
    require_row_access(matrix, where)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{where} is empty ({matrix.shape[0]} cells x {matrix.shape[1]} features)."
        )
    problems = {
        "nan": (
            "contains NaN or infinite values",
            "CFGen models raw counts: remove or impute those entries first.",
        ),
        "negative": (
            "contains negative values, so it does not hold raw counts",
            f"Pass the raw count matrix (e.g. `{layer_argument}='counts'`) instead of "
            "normalised data.",
        ),
        "fraction": (
            "contains non-integer values, so it does not hold raw counts (normalised or "
            "log-transformed data?)",
            f"Pass the raw UMI counts, e.g. `{layer_argument}='counts'`.",
        ),
    }
    bad: dict[str, list[int]] = {name: [] for name in problems}
    empty_cells: list[int] = []
    for start, chunk in row_chunks(matrix):
        values = _values(chunk)
        finite = np.isfinite(values)
        checks = {
            "nan": ~finite,
            "negative": finite & (values < 0),
            "fraction": finite & (values != np.round(values)),
        }
        for name, flagged in checks.items():
            if flagged.any():
                bad[name].extend((start + _bad_rows(chunk, flagged)).tolist())
        if allow_empty_cells:
            continue
        sums = np.asarray(chunk.sum(axis=1)).ravel()
        empty_cells.extend((start + np.flatnonzero(sums == 0)).tolist())
    for name, (problem, fix) in problems.items():
        if bad[name]:
            raise ValueError(f"{where} {problem} in {_name_cells(bad[name], cell_names)}. {fix}")
    if empty_cells:
        raise ValueError(
            f"{where} has zero total counts in {_name_cells(empty_cells, cell_names)}. Their "
            "size factor is undefined; filter them first, e.g. "
            "`sc.pp.filter_cells(adata, min_counts=1)`."
        )
