"""Defaults that follow the number of registered cells: latent size, encoder width, dropout.

An autoencoder of a few million weights memorises a few hundred training cells: it spreads them
over the latent far more widely than it places cells it has not seen, and the flow then learns
that spread (see the benchmarks page, small data). These defaults give small data a smaller,
more regularised autoencoder. Each moves between regimes with evidence behind them, changing
steadily in ``log(cells)`` between.
"""

from __future__ import annotations

import math
from itertools import pairwise

MAX_DEFAULT_LATENT = 50
MIN_DEFAULT_LATENT = 10
CELLS_PER_LATENT_DIMENSION = 10
#: Encoder dropout: the strong one measured best up to 500 cells, scVI's from 2,000 (where the
#: narrow encoder's range ends).
LARGE_DROPOUT_CELLS, SMALL_DROPOUT_CELLS = 2_000, 500
#: Encoder dropout on large data (scVI's) and on small data.
LARGE_DATA_DROPOUT, SMALL_DATA_DROPOUT = 0.1, 0.5
#: Hidden layer sizes of the RNA encoder (mirrored by the decoder) on large data: the paper's,
#: on its data sets of 18,000 cells and more.
LARGE_DATA_HIDDEN = (512, 256)
#: (registered cells, encoder hidden sizes) where the width rule is anchored: the narrowest
#: measured best up to 500 cells, the middle one on 960-2,110 cells, the paper's from 20,000.
WIDTH_ANCHORS = ((500, (128, 64)), (2_000, (256, 128)), (20_000, LARGE_DATA_HIDDEN))


def small_to_large(n_cells: int | None, small: int, large: int) -> float:
    """Where ``n_cells`` lies between two regimes: 0 up to ``small`` cells, 1 from ``large``.

    Linear in ``log(n_cells)`` between; ``None`` (cells not known, e.g. a data module): 1.
    """
    if n_cells is None or n_cells >= large:
        return 1.0
    if n_cells <= small:
        return 0.0
    return math.log(n_cells / small) / math.log(large / small)


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
    """The encoder dropout when the user gives none: 0.5 up to 500 cells, 0.1 from 2,000.

    On 160-480 registered cells dropout 0.3 lowered c2st, W2 and zeros per cell against 0.1,
    and 0.5 with the narrower encoder of :func:`default_hidden_sizes` lowered W2, zeros and
    the log-variance error further on every such case of the generalisation suite. On 960
    cells with that encoder 0.3 beat 0.1 on every metric (W2/floor 1.120 -> 1.073, c2st
    0.702 -> 0.660); on 2,110 cells 0.2-0.3 cost c2st. Between 500 and 2,000 cells the rate
    falls linearly in ``log(n_cells)`` (0.4 at 707, 0.3 at 1,000, 0.2 at 1,414). ``None``
    (cells not known): 0.1.
    """
    position = small_to_large(n_cells, SMALL_DROPOUT_CELLS, LARGE_DROPOUT_CELLS)
    return round(SMALL_DATA_DROPOUT + position * (LARGE_DATA_DROPOUT - SMALL_DATA_DROPOUT), 3)


def default_hidden_sizes(n_cells: int | None) -> tuple[int, ...]:
    """The RNA encoder's hidden sizes when the user gives none: (128, 64) up to 500 cells.

    (256, 128) at 2,000 cells and the paper's (512, 256) from 20,000 cells on (and when the
    cells are not known), the size it used on its data sets of 18,000 cells and more; between
    two anchors of :data:`WIDTH_ANCHORS` every layer grows geometrically with ``log(n_cells)``
    (e.g. (177, 89) at 960 cells, (362, 181) at 6,325). On the generalisation suite halving
    the paper's widths lowered W2 on every case of 160-2,110 registered cells, and halving
    them again lowered W2 on every case of 160-480 cells, with c2st lower on two of the three.
    See the benchmarks page.
    """
    if n_cells is None:
        return WIDTH_ANCHORS[-1][1]
    for (small_cells, small), (large_cells, large) in pairwise(WIDTH_ANCHORS):
        if n_cells < large_cells:
            position = small_to_large(n_cells, small_cells, large_cells)
            return tuple(
                int(round(narrow * (wide / narrow) ** position))
                for narrow, wide in zip(small, large, strict=True)
            )
    return WIDTH_ANCHORS[-1][1]
