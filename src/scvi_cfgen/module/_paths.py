"""Probability paths and minibatch couplings for conditional flow matching."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


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


def ot_pair_noise(
    z0: torch.Tensor, z1: torch.Tensor, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Reorder noise ``z0`` so that ``z0[j]`` is the exact-OT partner of ``z1[j]``.

    Only the noise is permuted, so every data point keeps its own attributes and size factor
    (the published code re-paired latents without their labels). With ``groups`` (one integer
    per cell, e.g. its combination of conditions) the pairing is solved within each group, and
    noise only moves between cells of the same group: the noise paired with a condition's cells
    then stays a standard normal sample, as the noise the conditional field starts from at
    generation. Pairing across conditions would hand each condition the part of the Gaussian
    nearest its cells, and generation from the whole Gaussian would then start where that
    condition's field was never trained.
    """
    if groups is None:
        return z0[_ot_partners(z0, z1)]
    paired = z0.clone()
    for group in torch.unique(groups):
        members = torch.nonzero(groups == group).flatten()
        if len(members) > 1:
            paired[members] = z0[members][_ot_partners(z0[members], z1[members])]
    return paired


def _ot_partners(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Index of the noise row that exact OT pairs with each row of ``z1``.

    Exact OT between two equal-size uniform point clouds is an assignment problem (an optimal
    plan is a permutation), solved by scipy's Jonker-Volgenant ``linear_sum_assignment``: the
    same pairing as POT's network simplex (``ot.emd``), 1.6-2.8x faster at 64-1,024 cells.
    """
    cost = torch.cdist(z0.detach().float(), z1.detach().float()).pow(2).cpu().numpy()
    noise_rows, data_rows = linear_sum_assignment(cost)
    partners = np.empty(len(data_rows), dtype=np.int64)
    partners[data_rows] = noise_rows
    return torch.as_tensor(partners, device=z0.device)
