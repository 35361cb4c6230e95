"""Arithmetic precision of the flow stage: bfloat16 matrix products where the hardware has them."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

FlowPrecision = Literal["auto", "32", "bf16-mixed"]
FLOW_PRECISIONS = ("auto", "32", "bf16-mixed")


def has_fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (faster than float32).

    CUDA devices that report bfloat16 support, and CPUs with the AVX-512 BF16 or AMX-BF16
    instructions. Elsewhere bfloat16 is emulated and slower than float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return False


def check_flow_precision(precision: str) -> None:
    """Refuse a precision the flow stage does not know."""
    if precision not in FLOW_PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {FLOW_PRECISIONS} (the flow stage's arithmetic); "
            f"got {precision!r}."
        )


def flow_autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast context of the velocity field's forward pass for ``precision`` on ``device``.

    ``"bf16-mixed"`` (or ``"auto"`` on hardware with native bfloat16) runs the matrix products in
    bfloat16 under :func:`torch.autocast`; the weights, the optimiser state and the loss stay in
    float32. ``"32"`` (or ``"auto"`` elsewhere) changes nothing.
    """
    use = precision == "bf16-mixed" or (precision == "auto" and has_fast_bfloat16(device))
    if not use or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
