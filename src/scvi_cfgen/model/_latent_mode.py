"""The two latent spaces of the model: CFGen's bottleneck and cellFlow's gene logits."""

from __future__ import annotations

from scvi_cfgen.module._autoencoder import LATENT_SPACES

from ._size_defaults import default_latent_size


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
