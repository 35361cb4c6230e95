"""The latent flow: conditional flow matching with compositional classifier-free guidance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import nn

from ._guidance import ConditioningScheme, GuidedVelocity, drop_conditions
from ._paths import LinearGaussianPath, ot_pair_noise
from ._solvers import SolverBackend, SolverMethod, integrate
from ._velocity import ResNetVelocityField

Coupling = Literal["independent", "ot"]
COUPLINGS = get_args(Coupling)
CONDITIONING_SCHEMES = get_args(ConditioningScheme)


class LatentFlow(nn.Module):
    """Velocity field, probability path, coupling, condition dropout, guidance and sampler.

    Knows latents (in standardised units), category codes and size-factor conditions, not genes
    or peaks: the same flow serves any autoencoder.

    Parameters
    ----------
    n_latent
        Latent dimension.
    n_categories_per_attribute
        Number of categories of each conditioning attribute (each also gets a learned null).
    hidden_dim, n_blocks, condition_dim
        Velocity network width, number of residual blocks and conditioning embedding size.
    condition_on_size_factor
        Whether the field also sees the min-max scaled log size factor.
    p_uncond
        Per-cell probability of training on the null (unconditional) condition, in ``[0, 1)``.
    conditioning_scheme
        ``"single"`` (one attribute per conditioned cell, the paper's scheme) or
        ``"single_and_joint"`` (also the joint condition).
    sigma_min
        Width of the linear Gaussian path at ``t = 1`` (non-negative).
    coupling
        ``"independent"`` noise-data pairs or minibatch exact ``"ot"`` pairs (an assignment
        solved by scipy on the CPU) within each combination of conditions.
    """

    def __init__(
        self,
        n_latent: int,
        n_categories_per_attribute: Sequence[int],
        hidden_dim: int = 512,
        n_blocks: int = 3,
        condition_dim: int = 128,
        condition_on_size_factor: bool = False,
        p_uncond: float = 0.2,
        conditioning_scheme: ConditioningScheme = "single",
        sigma_min: float = 1e-4,
        coupling: Coupling = "independent",
    ):
        super().__init__()
        if not 0 <= p_uncond < 1:
            raise ValueError(f"`p_uncond` must be in [0, 1), got {p_uncond}.")
        if conditioning_scheme not in CONDITIONING_SCHEMES:
            raise ValueError(
                f"`conditioning_scheme` must be one of {CONDITIONING_SCHEMES}, "
                f"not {conditioning_scheme!r}."
            )
        if coupling not in COUPLINGS:
            raise ValueError(f"`coupling` must be one of {COUPLINGS}, not {coupling!r}.")
        if not 0 <= sigma_min < 1:
            raise ValueError(f"`sigma_min` must be in [0, 1), got {sigma_min}.")
        if min(n_latent, hidden_dim, n_blocks, condition_dim) < 1:
            raise ValueError(
                "Flow sizes (`n_latent`, hidden dim, blocks, condition dim) must be >= 1."
            )
        self.n_latent = int(n_latent)
        self.n_categories_per_attribute = [int(n) for n in n_categories_per_attribute]
        self.condition_on_size_factor = condition_on_size_factor
        self.p_uncond = float(p_uncond)
        self.conditioning_scheme = conditioning_scheme
        self.coupling = coupling
        self.path = LinearGaussianPath(sigma_min)
        self.velocity_field = ResNetVelocityField(
            n_latent,
            self.n_categories_per_attribute,
            hidden_dim=hidden_dim,
            n_blocks=n_blocks,
            condition_dim=condition_dim,
            condition_on_size_factor=condition_on_size_factor,
        )
        self.register_buffer(
            "null_codes", torch.tensor(self.n_categories_per_attribute, dtype=torch.long), False
        )

    def loss(
        self,
        z1: torch.Tensor,
        codes: torch.Tensor,
        size_condition: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-cell conditional flow matching loss for standardised latents ``z1``.

        Noise is paired with ``z1`` (independently or by exact minibatch OT within each
        combination of codes, which permutes only the noise so each cell keeps its own codes and
        size factor, and each condition's noise stays standard normal), a time is drawn per cell,
        conditions are dropped per cell to a learned null, and the field regresses the path's
        velocity. ``generator`` makes every draw reproducible (common random numbers).
        """
        z0 = torch.randn(z1.shape, device=z1.device, generator=generator)
        if self.coupling == "ot":
            groups = torch.unique(codes, dim=0, return_inverse=True)[1] if codes.shape[1] else None
            z0 = ot_pair_noise(z0, z1, groups)
        t = torch.rand(z1.shape[0], device=z1.device, generator=generator)
        zt, target = self.path.sample(z0, z1, t)
        codes = drop_conditions(
            codes, self.null_codes, self.p_uncond, self.conditioning_scheme, generator
        )
        velocity = self.velocity_field(zt, t, codes, size_condition)
        return (velocity - target).pow(2).mean(dim=-1)

    def guided(
        self,
        codes: torch.Tensor,
        weights: torch.Tensor,
        size_condition: torch.Tensor | None = None,
    ) -> GuidedVelocity:
        """The guided field for fixed per-cell codes and weights (built once per chunk)."""
        return GuidedVelocity(
            self.velocity_field, codes, weights.float(), self.null_codes, size_condition
        )

    @torch.inference_mode()
    def integrate(
        self,
        z: torch.Tensor,
        codes: torch.Tensor,
        weights: torch.Tensor,
        size_condition: torch.Tensor | None = None,
        t_start: float = 0.0,
        t_end: float = 1.0,
        method: SolverMethod = "dopri5",
        n_steps: int = 100,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        backend: SolverBackend = "torchdiffeq",
    ) -> torch.Tensor:
        """Integrate the guided field from ``t_start`` to ``t_end`` (``1 -> 0`` inverts)."""
        field = self.guided(codes, weights, size_condition)
        return integrate(field, z, t_start, t_end, method, n_steps, rtol, atol, backend)
