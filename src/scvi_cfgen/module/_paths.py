"""Probability paths and minibatch couplings for conditional flow matching."""

from __future__ import annotations

import numpy as np
import ot
import torch


class LinearGaussianPath:
    """Linear path ``x_t = t z1 + (1 - (1 - sigma_min) t) z0`` (Lipman et al., 2023).

    Parameters
    ----------
    sigma_min
        Width of the Gaussian around the data at ``t = 1``.
    """

    def __init__(self, sigma_min: float = 1e-4):
        self.sigma_min = sigma_min

    def sample(
        self, z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points on the path at times ``t`` (batch,) and the target velocities there."""
        t = t[:, None]
        zt = t * z1 + (1 - (1 - self.sigma_min) * t) * z0
        target = z1 - (1 - self.sigma_min) * z0
        return zt, target


def ot_pair_noise(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Reorder noise ``z0`` so that ``z0[j]`` is the exact-OT partner of ``z1[j]``.

    Only the noise is permuted, so every data point keeps its own attributes and size factor
    (the published code re-paired latents without their labels).
    """
    cost = torch.cdist(z0.detach().float(), z1.detach().float()).pow(2).cpu().numpy()
    n0, n1 = cost.shape
    plan = ot.emd(np.full(n0, 1.0 / n0), np.full(n1, 1.0 / n1), cost.astype(np.float64))
    partner = torch.as_tensor(plan.argmax(axis=0), device=z0.device)
    return z0[partner]
