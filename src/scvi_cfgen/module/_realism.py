"""A real-vs-generated scorer of latents, and the selection of the most real-looking cells.

This is the post-guidance of single-cell latent diffusion (SCLD): a small classifier, trained
after the generator to tell the latents of real cells from generated ones given their
conditions, ranks oversampled generated cells so that the most real-looking ones are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class RealismScorer(nn.Module):
    """Logit that a standardised latent comes from a real cell, given the cell's conditions.

    Three linear layers (SCLD's post-guidance scorer) on the latent concatenated with a one-hot
    encoding of each attribute (an attribute that is not given, code ``-1``, is all zeros).

    Parameters
    ----------
    n_latent
        Latent dimension.
    n_categories_per_attribute
        Number of categories of each attribute.
    n_hidden
        Width of the two hidden layers.
    """

    def __init__(
        self, n_latent: int, n_categories_per_attribute: Sequence[int], n_hidden: int = 128
    ):
        super().__init__()
        self.n_categories_per_attribute = [int(n) for n in n_categories_per_attribute]
        n_input = n_latent + sum(self.n_categories_per_attribute)
        self.network = nn.Sequential(
            nn.Linear(n_input, n_hidden),
            nn.SiLU(),
            nn.Linear(n_hidden, n_hidden),
            nn.SiLU(),
            nn.Linear(n_hidden, 1),
        )
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))

    def features(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The latent and one block of one-hot columns per attribute."""
        blocks = [z]
        for k, n in enumerate(self.n_categories_per_attribute):
            code = codes[:, k].long()
            one_hot = F.one_hot(code.clamp_min(0), n).to(z.dtype)
            blocks.append(one_hot * (code >= 0).unsqueeze(1).to(z.dtype))
        return torch.cat(blocks, dim=1)

    def forward(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Realism logits ``(n_cells,)`` of standardised latents ``z`` with ``codes``."""
        return self.network(self.features(z, codes)).squeeze(1)


def oversampled_groups(codes: torch.Tensor, keep_fraction: float) -> tuple[torch.Tensor, list]:
    """Candidates to draw for cells that share conditions, and which rows each group fills.

    Cells with identical ``codes`` rows form a group; a group of ``k`` cells gets
    ``ceil(k / keep_fraction)`` candidates with its conditions. Returns the candidates' index
    into ``codes`` (each candidate copies the conditions, and size factor, of a row of its group,
    cycling through them) and, per group, the rows and the candidate positions.
    """
    _, inverse = torch.unique(codes, dim=0, return_inverse=True)
    sources, groups, offset = [], [], 0
    for group in range(int(inverse.max()) + 1 if len(inverse) else 0):
        rows = torch.nonzero(inverse == group).flatten()
        n_candidates = int(np.ceil(len(rows) / keep_fraction - 1e-9))
        picks = rows[torch.arange(n_candidates, device=rows.device) % len(rows)]
        sources.append(picks)
        groups.append((rows, torch.arange(offset, offset + n_candidates)))
        offset += n_candidates
    return torch.cat(sources), groups


def keep_most_real(scores: torch.Tensor, groups: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, the candidates with the highest scores, one per row of the group.

    Returns ``(rows, candidates)``: row ``rows[i]`` of the output takes candidate
    ``candidates[i]``. Within a group the best candidate goes to its first row.
    """
    rows_out, kept = [], []
    for rows, positions in groups:
        order = torch.argsort(scores[positions.to(scores.device)], descending=True)
        kept.append(positions.to(scores.device)[order[: len(rows)]])
        rows_out.append(rows.to(scores.device))
    return torch.cat(rows_out), torch.cat(kept)
