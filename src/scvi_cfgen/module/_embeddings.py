"""Embeddings of the flow's conditioning: time, attributes (with null tokens), size factor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal features of a scalar in ``[0, 1]`` (scaled by ``scale`` before the sines)."""

    def __init__(self, dim: int, scale: float = 20.0, max_period: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"Sinusoidal embedding dimension must be even, got {dim}.")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        """Embed a tensor of shape ``(batch,)``."""
        angles = self.scale * value.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def _embedded_mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(
        SinusoidalEmbedding(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim)
    )


class ConditionEmbedding(nn.Module):
    """Sum of a time embedding, one embedding per attribute and an optional size-factor one.

    Every attribute ``k`` with ``n_k`` categories has ``n_k + 1`` learned vectors: the last one
    (index ``n_k``) is that attribute's *null* token, used when the attribute is dropped. With
    every attribute null the network gives the unconditional field.

    Parameters
    ----------
    n_categories_per_attribute
        Number of categories of each attribute.
    dim
        Embedding dimension.
    condition_on_size_factor
        Whether a sinusoidal embedding of the min-max scaled log size factor is added.
    """

    def __init__(
        self,
        n_categories_per_attribute: Sequence[int],
        dim: int,
        condition_on_size_factor: bool = False,
    ):
        super().__init__()
        self.time = _embedded_mlp(dim)
        self.attributes = nn.ModuleList(
            nn.Embedding(n + 1, dim) for n in n_categories_per_attribute
        )
        self.size_factor = _embedded_mlp(dim) if condition_on_size_factor else None

    def forward(
        self,
        t: torch.Tensor,
        codes: torch.Tensor,
        scaled_log_size_factor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Conditioning vectors of shape ``(batch, dim)``.

        Parameters
        ----------
        t
            Times, shape ``(batch,)``.
        codes
            Category codes, shape ``(batch, n_attributes)``; ``n_k`` means null for attribute k.
        scaled_log_size_factor
            Log size factor scaled to ``[0, 1]``, shape ``(batch,)``; required when the module
            conditions on it.
        """
        embedding = self.time(t)
        for k, table in enumerate(self.attributes):
            embedding = embedding + table(codes[:, k])
        if self.size_factor is not None:
            if scaled_log_size_factor is None:
                raise ValueError("This flow is conditioned on the size factor; pass it.")
            embedding = embedding + self.size_factor(scaled_log_size_factor)
        return embedding
