"""From latents to output cells: seeded count drawing per block, sparse chunks, AnnData/MuData."""

from __future__ import annotations

from collections.abc import Iterator

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scvi_cfgen._constants import ATAC, RNA

from ._multimodal import assemble_output

#: Cells per seed block: every block of this many consecutive output cells draws its noise and
#: counts from its own seed, so the cells do not depend on how many cells a chunk holds.
SEED_BLOCK = 64
OUTPUT_DTYPES = {RNA: np.int32, ATAC: np.uint8}


def base_seed(seed: int | None) -> int:
    """The user's seed, or one drawn from torch's global generator."""
    if seed is None:
        return int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"`seed` must be an integer or None, got {seed!r}.")
    return int(seed) % 2**63


def block_seed(base_seed: int, block: int) -> int:
    """Seed of the ``block``-th block of cells of a call seeded with ``base_seed``."""
    return int(np.random.SeedSequence([base_seed, block]).generate_state(1, dtype=np.uint64)[0])


def chunk_size(batch_size: int) -> int:
    """Cells per chunk: ``batch_size`` rounded down to whole seed blocks (at least one)."""
    return max(SEED_BLOCK, batch_size - batch_size % SEED_BLOCK)


def block_noise(base_seed: int, start: int, stop: int, n_latent: int) -> torch.Tensor:
    """Standard normal noise of cells ``start:stop`` (``start`` a block boundary), on the CPU."""
    parts = []
    for first in range(start, stop, SEED_BLOCK):
        generator = torch.Generator().manual_seed(block_seed(base_seed, first // SEED_BLOCK))
        parts.append(torch.randn(min(SEED_BLOCK, stop - first), n_latent, generator=generator))
    return torch.cat(parts)


def _blocks(start: int, stop: int) -> Iterator[tuple[int, slice]]:
    for first in range(start, stop, SEED_BLOCK):
        yield first // SEED_BLOCK, slice(first - start, min(first + SEED_BLOCK, stop) - start)


@torch.inference_mode()
def draw_cells(
    autoencoder,
    z: torch.Tensor,
    library: torch.Tensor | None,
    dispersion_codes: torch.Tensor | None,
    base_seed: int,
    start: int,
) -> dict[str, sp.csr_matrix]:
    """Draw every modality for latents ``z`` of output cells ``start:start+len(z)``.

    The decoder runs once for the chunk; counts (NB) and peaks (Bernoulli) are then drawn block
    by block, each block under its own seed. Returns CSR ``int32`` counts and ``uint8`` peaks.
    """
    stop = start + z.shape[0]
    distributions = {}
    if autoencoder.has_rna:
        nb = autoencoder.count_distribution(z, library, dispersion_codes)
        distributions[RNA] = lambda rows, nb=nb: type(nb)(mu=nb.mu[rows], theta=nb.theta[rows])
    if autoencoder.has_atac:
        logits = autoencoder.peak_distribution(z).logits
        distributions[ATAC] = lambda rows: torch.distributions.Bernoulli(logits=logits[rows])
    drawn: dict[str, list[sp.csr_matrix]] = {role: [] for role in distributions}
    devices = [z.device] if z.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for block, rows in _blocks(start, stop):
            torch.manual_seed(block_seed(base_seed, block) ^ 0x5EED)
            for role, distribution in distributions.items():
                values = distribution(rows).sample()
                drawn[role].append(sp.csr_matrix(values.cpu().numpy().astype(OUTPUT_DTYPES[role])))
    return {role: sp.vstack(parts, format="csr") for role, parts in drawn.items()}


def stack_output(
    chunks: list[dict[str, sp.csr_matrix]],
    modalities: tuple[str, ...],
    var_names: dict[str, pd.Index],
    modality_names: dict[str, str] | None,
    obs: pd.DataFrame,
    uns: dict,
) -> ad.AnnData | md.MuData:
    """Stack per-chunk matrices into the output AnnData (or MuData, for MuData models)."""
    matrices = {
        role: sp.vstack([chunk[role] for chunk in chunks], format="csr")
        if chunks
        else sp.csr_matrix((0, len(var_names[role])), dtype=OUTPUT_DTYPES[role])
        for role in modalities
    }
    return assemble_output(matrices, obs, var_names, modality_names, uns)
