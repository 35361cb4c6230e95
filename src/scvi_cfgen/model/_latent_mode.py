"""The two latent spaces of the model: CFGen's bottleneck and cellFlow's gene logits."""

from __future__ import annotations

from scvi_cfgen.module._autoencoder import LATENT_SPACES

MAX_DEFAULT_LATENT = 50
MIN_DEFAULT_LATENT = 10
CELLS_PER_LATENT_DIMENSION = 10


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
