"""Peak memory of scvi-tools' ``TileDBDataModule`` loader alone, over one shuffled epoch.

Separates what reading a TileDB-SOMA experiment costs from what training costs: the module is
``scale.soma_datamodule``, the one ``scale.py --soma`` trains from, and its training
loader is iterated once without a model, and the process's peak resident memory (``VmHWM``) is
printed before and after, as one JSON line. ``--memory-budget-mb`` opens the experiment with a
bounded TileDB read budget (``scale.soma_context``); ``--io-batch-size`` sets tiledbsoma-ml's
cells per read.

Run: ``python benchmarks/soma_reads.py DIR/soma_1000000 [--memory-budget-mb 128]
[--io-batch-size 8192]`` on an experiment written by ``scale.py --soma``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scale import peak_rss_mb, soma_datamodule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--memory-budget-mb", type=int)
    parser.add_argument("--io-batch-size", type=int)
    args = parser.parse_args()

    datamodule = soma_datamodule(args.experiment, args.io_batch_size, args.memory_budget_mb)
    datamodule.setup()
    before = peak_rss_mb()
    began = time.perf_counter()
    n_batches = sum(1 for _ in datamodule.train_dataloader())
    print(
        json.dumps(
            {
                "experiment": str(args.experiment),
                "memory_budget_mb": args.memory_budget_mb,
                "io_batch_size": args.io_batch_size,
                "batches": n_batches,
                "peak_before_epoch_mb": round(before, 1),
                "peak_mb": round(peak_rss_mb(), 1),
                "epoch_s": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
