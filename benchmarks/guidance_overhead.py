"""Cost of one guided velocity evaluation: rebuilt per call (0.1) vs built once per chunk.

Run: ``python benchmarks/guidance_overhead.py [old_guidance.py]``. Without the optional path to
the 0.1 ``_guidance.py`` only the current module is timed. Sizes are PBMC3k defaults (latent 50,
field 3 x 512, two attributes, chunk 1,024 cells, weights 1 and 2).
"""

import importlib.util
import sys
import time

import torch

from scvi_cfgen.module import GuidedVelocity, ResNetVelocityField


def timed(function, repeats: int = 50) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    n_cells, n_latent = 1024, 50
    field = ResNetVelocityField(n_latent, [8, 3]).eval()
    z, t = torch.randn(n_cells, n_latent), torch.tensor(0.4)
    codes = torch.stack([torch.arange(n_cells) % 8, torch.arange(n_cells) % 3], dim=1)
    weights = torch.tensor([[1.0, 2.0]]).expand(n_cells, -1)
    null = torch.tensor([8, 3])
    with torch.inference_mode():
        guided = GuidedVelocity(field, codes, weights, null)
        seconds = timed(lambda: guided(t, z))
        print(f"GuidedVelocity (built once): {1e3 * seconds:.2f} ms per evaluation")
        if len(sys.argv) > 1:
            spec = importlib.util.spec_from_file_location("old_guidance", sys.argv[1])
            old = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(old)
            seconds_old = timed(lambda: old.guided_velocity(field, z, t, codes, weights, null))
            print(f"guided_velocity of 0.1 (per call): {1e3 * seconds_old:.2f} ms per evaluation")
            difference = guided(t, z) - old.guided_velocity(field, z, t, codes, weights, null)
            print(f"largest difference between the two: {difference.abs().max().item():.2e}")


if __name__ == "__main__":
    main()
