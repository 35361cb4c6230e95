"""Exponential moving average of a module's trainable weights, with a warm-up counted in steps."""

from __future__ import annotations

import torch

#: Decay the average approaches after many steps (a horizon of ~1,000 optimiser steps).
EMA_MAX_DECAY = 0.999


def ema_decay(n_updates: int, max_decay: float = EMA_MAX_DECAY) -> float:
    """Decay after ``n_updates`` updates: ``min(max_decay, (1 + n) / (10 + n))``.

    The warm-up makes the average span roughly the last tenth of the steps taken so far, so a
    stage of a few hundred steps (small data) is averaged over tens of steps instead of being
    dominated by its initial weights, and a long stage reaches ``max_decay``.
    """
    return min(max_decay, (1.0 + n_updates) / (10.0 + n_updates))


class ExponentialMovingAverage:
    """Shadow copies of ``parameters`` updated as ``shadow += (1 - decay) * (param - shadow)``.

    Parameters
    ----------
    parameters
        The trainable parameters to average (frozen ones are left out by the caller).
    max_decay
        Decay reached after the warm-up (see :func:`ema_decay`).
    """

    def __init__(self, parameters: list[torch.nn.Parameter], max_decay: float = EMA_MAX_DECAY):
        if not 0.0 < max_decay < 1.0:
            raise ValueError(f"The EMA decay must be in (0, 1), got {max_decay}.")
        self.parameters = list(parameters)
        self.max_decay = max_decay
        self.shadow = [p.detach().clone() for p in self.parameters]
        self.n_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights."""
        self.n_updates += 1
        weight = 1.0 - ema_decay(self.n_updates, self.max_decay)
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.parameters], weight)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the averaged and the current weights (call twice to undo)."""
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            current = param.detach().clone()
            param.copy_(shadow)
            shadow.copy_(current)

    @torch.no_grad()
    def copy_to_parameters(self) -> None:
        """Overwrite the current weights with the average."""
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            param.copy_(shadow)

    def state_dict(self) -> dict:
        """The average and its update count (for checkpoints)."""
        return {"n_updates": self.n_updates, "shadow": [s.detach().cpu() for s in self.shadow]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore an average saved by :meth:`state_dict`."""
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(
                "The checkpoint's weight average does not match this model's trainable weights."
            )
        self.n_updates = int(state["n_updates"])
        for shadow, saved in zip(self.shadow, state["shadow"], strict=True):
            shadow.copy_(saved.to(shadow.device))
