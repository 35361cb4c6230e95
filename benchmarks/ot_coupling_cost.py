"""What the exact minibatch OT coupling adds to a flow optimiser step, on CPU and on CUDA.

Times full optimiser steps of the default velocity field (``LatentFlow`` loss, backward, AdamW)
with ``coupling="independent"`` and ``coupling="ot"`` on random latents, for a grid of batch
sizes, latent sizes and numbers of condition combinations (the OT problem is solved within each
combination), plus the assignment alone (``ot_pair_noise``). Medians over ``--steps`` steps after
warm-up; on CUDA each step is synchronised. No data, no training: only the cost of a step.

    python benchmarks/ot_coupling_cost.py --out benchmark_output/ot_coupling_cost.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scvi_cfgen.module import LatentFlow, ot_pair_noise


def _median_ms(step, device: torch.device, steps: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return 1e3 * float(np.median(times))


def measure(device: torch.device, batch: int, n_latent: int, n_groups: int, steps: int) -> dict:
    """Milliseconds per flow step with either coupling, and per assignment alone."""
    generator = torch.Generator(device=device).manual_seed(0)
    z1 = torch.randn(batch, n_latent, device=device, generator=generator)
    codes = torch.randint(0, n_groups, (batch, 1), device=device, generator=generator)
    row = {"device": device.type, "batch": batch, "n_latent": n_latent, "groups": n_groups}
    for coupling in ("independent", "ot"):
        flow = LatentFlow(n_latent, [n_groups], coupling=coupling).to(device)
        optimiser = torch.optim.AdamW(flow.parameters(), lr=1e-3)

        def step(flow=flow, optimiser=optimiser):
            optimiser.zero_grad()
            flow.loss(z1, codes).mean().backward()
            optimiser.step()

        row[f"step ms ({coupling})"] = _median_ms(step, device, steps)
    z0 = torch.randn_like(z1)
    row["assignment ms"] = _median_ms(lambda: ot_pair_noise(z0, z1, codes[:, 0]), device, steps)
    row["ot / independent"] = row["step ms (ot)"] / row["step ms (independent)"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--latents", type=int, nargs="+", default=[50])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/ot_coupling_cost.csv"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [
        measure(device, batch, n_latent, groups, args.steps)
        for device in devices
        for batch in args.batch_sizes
        for n_latent in args.latents
        for groups in args.groups
    ]
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
