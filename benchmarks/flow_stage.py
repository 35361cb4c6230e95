"""Time of the flow stage: latents encoded once (the default) vs every minibatch re-encoded.

Trains one PBMC3k autoencoder, then the same flow epochs from the same weights and seed along
both paths, and reports seconds per flow epoch, the one-off cost of encoding the cells, and the
largest difference between the two validation-loss curves (the paths train the same flow).

    python benchmarks/flow_stage.py --out benchmark_output/flow_stage.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import scvi
import torch

import scvi_cfgen
from scvi_cfgen.model._latent_table import latent_table


def _flow_epochs(model, start, on_table: bool, epochs: int, seed: int) -> dict:
    model.module.load_state_dict(start)
    model._flow_on_latent_table = on_table
    scvi.settings.seed = seed
    began = time.perf_counter()
    model.train_flow(max_epochs=epochs, early_stopping=False, enable_progress_bar=False)
    seconds = time.perf_counter() - began
    losses = model.history_["validation_loss_flow"].to_numpy(dtype=float).ravel()
    return {"seconds": seconds, "seconds_per_epoch": seconds / epochs, "validation": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoencoder-epochs", type=int, default=30)
    parser.add_argument("--flow-epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/flow_stage.json"))
    args = parser.parse_args()

    scvi.settings.seed = args.seed
    adata = scvi_cfgen.datasets.pbmc3k()
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = scvi_cfgen.CFGenModel(adata)
    model.train_autoencoder(max_epochs=args.autoencoder_epochs, enable_progress_bar=False)
    start = copy.deepcopy(model.module.state_dict())

    began = time.perf_counter()
    latent_table(model)
    encode_seconds = time.perf_counter() - began

    counts = _flow_epochs(model, start, False, args.flow_epochs, args.seed + 1)
    table = _flow_epochs(model, start, True, args.flow_epochs, args.seed + 1)
    result = {
        "data": f"PBMC3k, {adata.n_obs} cells x {adata.n_vars} genes",
        "flow_epochs": args.flow_epochs,
        "torch_threads": torch.get_num_threads(),
        "re-encoding every minibatch: s/epoch": round(counts["seconds_per_epoch"], 4),
        "latent table: s/epoch": round(table["seconds_per_epoch"], 4),
        "speed-up per epoch": round(counts["seconds_per_epoch"] / table["seconds_per_epoch"], 2),
        "encoding the cells once: s": round(encode_seconds, 3),
        "largest validation-loss difference": float(
            np.max(np.abs(counts["validation"] - table["validation"]))
        ),
        "final validation loss (counts, table)": [
            float(counts["validation"][-1]),
            float(table["validation"][-1]),
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
