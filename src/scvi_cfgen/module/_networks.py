"""Count autoencoder networks: Linear -> BatchNorm1d -> ELU blocks (paper section 4.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp_blocks(n_in: int, hidden: Sequence[int], dropout_rate: float = 0.0) -> nn.Sequential:
    """Stack of ``Linear -> BatchNorm1d -> ELU [-> Dropout]`` blocks of the given sizes."""
    layers: list[nn.Module] = []
    for n_out in hidden:
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ELU()]
        if dropout_rate > 0:
            layers.append(nn.Dropout(dropout_rate))
        n_in = n_out
    return nn.Sequential(*layers)


class CountEncoder(nn.Module):
    """Deterministic encoder from ``log1p`` counts to a latent vector.

    Parameters
    ----------
    n_input
        Number of features (genes).
    n_latent
        Latent dimension.
    n_hidden
        Hidden layer sizes, e.g. ``(512, 256)``.
    dropout_rate
        Dropout probability after each hidden layer.
    """

    def __init__(
        self, n_input: int, n_latent: int, n_hidden: Sequence[int], dropout_rate: float = 0.0
    ):
        super().__init__()
        self.body = mlp_blocks(n_input, n_hidden, dropout_rate)
        self.head = nn.Linear(n_hidden[-1] if n_hidden else n_input, n_latent)

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        """Encode raw counts (``log1p`` is applied here)."""
        return self.head(self.body(torch.log1p(counts)))


class FusedEncoder(nn.Module):
    """One encoder body per modality, concatenated and mapped by one linear layer to the latent.

    The multimodal encoder of CFGen (paper section 4.2): each modality's ``log1p`` input goes
    through its own ``Linear -> BatchNorm1d -> ELU`` stack; the outputs are concatenated and a
    single linear layer maps them to the shared latent.

    Parameters
    ----------
    n_inputs
        Number of features of each modality, e.g. ``{"rna": 2000, "atac": 30000}``.
    n_latent
        Latent dimension.
    n_hidden
        Hidden sizes of each modality's body, e.g. ``{"rna": (512, 256), "atac": (1024, 512)}``.
    dropout_rate
        Dropout probability after each hidden layer of every body.
    """

    def __init__(
        self,
        n_inputs: dict[str, int],
        n_latent: int,
        n_hidden: dict[str, Sequence[int]],
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.bodies = nn.ModuleDict(
            {
                name: mlp_blocks(n_in, n_hidden[name], dropout_rate)
                for name, n_in in n_inputs.items()
            }
        )
        n_fused = sum(
            n_hidden[name][-1] if n_hidden[name] else n_in for name, n_in in n_inputs.items()
        )
        self.head = nn.Linear(n_fused, n_latent)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encode a dict of raw (or binary) modality inputs (``log1p`` is applied here)."""
        parts = [body(torch.log1p(inputs[name])) for name, body in self.bodies.items()]
        return self.head(torch.cat(parts, dim=-1))


class CountDecoder(nn.Module):
    """Decoder from a latent vector to per-feature logits (mirror of the encoder)."""

    def __init__(self, n_latent: int, n_output: int, n_hidden: Sequence[int]):
        super().__init__()
        hidden = list(reversed(n_hidden))
        self.body = mlp_blocks(n_latent, hidden)
        self.head = nn.Linear(hidden[-1] if hidden else n_latent, n_output)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return unnormalised logits over features."""
        squeeze = z.dim() == 3
        if squeeze:  # (n_samples, batch, latent): BatchNorm1d wants 2-D input
            n_samples, batch = z.shape[:2]
            z = z.reshape(n_samples * batch, -1)
        logits = self.head(self.body(z))
        if squeeze:
            logits = logits.reshape(n_samples, batch, -1)
        return logits
