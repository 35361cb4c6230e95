"""The paper's residual velocity network for latent flow matching."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._embeddings import ConditionEmbedding


class ResidualBlock(nn.Module):
    """``h + Linear(SiLU(Linear(SiLU(h)) + Linear(c)))``."""

    def __init__(self, hidden_dim: int, condition_dim: int):
        super().__init__()
        self.state = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.condition = nn.Linear(condition_dim, hidden_dim)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return h + self.out(self.state(h) + self.condition(c))


class ResNetVelocityField(nn.Module):
    """Conditional velocity field ``v(z, t | y[, l])`` (input projection, residual blocks, output).

    Parameters
    ----------
    n_latent
        Dimension of the latent space the flow lives in.
    n_categories_per_attribute
        Number of categories of each attribute.
    hidden_dim
        Width of the residual stream.
    n_blocks
        Number of residual blocks.
    condition_dim
        Dimension of the conditioning embedding.
    condition_on_size_factor
        Whether the field is also conditioned on the scaled log size factor.
    """

    def __init__(
        self,
        n_latent: int,
        n_categories_per_attribute: Sequence[int],
        hidden_dim: int = 512,
        n_blocks: int = 3,
        condition_dim: int = 128,
        condition_on_size_factor: bool = False,
    ):
        super().__init__()
        self.condition = ConditionEmbedding(
            n_categories_per_attribute, condition_dim, condition_on_size_factor
        )
        self.input = nn.Linear(n_latent, hidden_dim)
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden_dim, condition_dim) for _ in range(n_blocks)
        )
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, n_latent))

    def forward(
        self,
        z: torch.Tensor,
        t: torch.Tensor,
        codes: torch.Tensor,
        scaled_log_size_factor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity at states ``z`` (batch, n_latent) and times ``t`` (batch,) or scalar."""
        if t.dim() == 0:
            t = t.expand(z.shape[0])
        c = self.condition(t, codes, scaled_log_size_factor)
        h = self.input(z)
        for block in self.blocks:
            h = block(h, c)
        return self.output(h)
