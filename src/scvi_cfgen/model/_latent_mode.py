"""The two latent spaces of the model: CFGen's bottleneck and cellFlow's gene logits."""

from __future__ import annotations

import math

from scvi_cfgen.module._autoencoder import LATENT_SPACES

MAX_DEFAULT_LATENT = 50
MIN_DEFAULT_LATENT = 10
CELLS_PER_LATENT_DIMENSION = 10
#: Encoder dropout on large data (scVI's) and on small data, and the numbers of registered
#: cells from which each applies; in between it falls linearly in log(cells).
LARGE_DATA_DROPOUT, SMALL_DATA_DROPOUT = 0.1, 0.3
LARGE_DATA_CELLS, SMALL_DATA_CELLS = 1_000, 500


def default_latent_size(n_cells: int | None) -> int:
    """The bottleneck's size when the user gives none: 50, or one dimension per 10 cells.

    The flow estimates a density in the latent space from the registered cells; with fewer
    than 10 cells per dimension it leaves noise in the directions the data barely spans (see
    the benchmarks page, small data). So below 500 cells the latent shrinks with the data, to
    no fewer than 10 dimensions. ``None`` (cells not known, e.g. a data module): 50.
    """
    if n_cells is None:
        return MAX_DEFAULT_LATENT
    by_cells = int(n_cells) // CELLS_PER_LATENT_DIMENSION
    return max(MIN_DEFAULT_LATENT, min(MAX_DEFAULT_LATENT, by_cells))


def default_dropout_rate(n_cells: int | None) -> float:
    """The encoder dropout when the user gives none: 0.3 up to 500 cells, 0.1 from 1,000.

    The fewer the cells, the more an encoder of a few million weights memorises its training
    cells, whose latents the flow then learns although unseen cells encode differently (see the
    benchmarks page). On the generalisation suite dropout 0.3 lowered c2st, W2 and zeros per
    cell against 0.1 on 160-480 registered cells, while 0.2 gained nothing over scVI's 0.1 on
    960 cells and 0.2-0.3 cost c2st on 1,600-2,110. Between 500 and 1,000 cells the rate falls
    linearly in ``log(n_cells)``. ``None`` (cells not known): 0.1.
    """
    if n_cells is None or n_cells >= LARGE_DATA_CELLS:
        return LARGE_DATA_DROPOUT
    if n_cells <= SMALL_DATA_CELLS:
        return SMALL_DATA_DROPOUT
    position = math.log(n_cells / SMALL_DATA_CELLS) / math.log(LARGE_DATA_CELLS / SMALL_DATA_CELLS)
    return round(SMALL_DATA_DROPOUT + position * (LARGE_DATA_DROPOUT - SMALL_DATA_DROPOUT), 3)


def latent_settings(
    latent: str,
    n_latent: int | None,
    coupling: str | None,
    n_genes: int,
    n_peaks: int,
    n_cells: int | None = None,
) -> tuple[int, str]:
    """The latent size and flow coupling of a ``latent`` mode, with the user's choices checked."""
    if latent not in LATENT_SPACES:
        raise ValueError(f"`latent` must be one of {LATENT_SPACES}, not {latent!r}.")
    if latent == "bottleneck":
        size = default_latent_size(n_cells) if n_latent is None else n_latent
        return size, (coupling or "ot")
    if n_genes == 0 or n_peaks > 0:
        raise ValueError(
            "`latent='genes'` (cellFlow mode) models RNA counts only: register an AnnData (or "
            "a MuData with RNA alone), or use `latent='bottleneck'` for ATAC and multiome data."
        )
    if n_latent is not None and n_latent != n_genes:
        raise ValueError(
            f"With `latent='genes'` the latent has one dimension per gene ({n_genes}); leave "
            f"out `n_latent` (got {n_latent})."
        )
    return n_genes, (coupling or "ot")
