"""Peak memory of scvi-tools' ``TileDBDataModule`` loader alone, over one shuffled epoch.

Separates what reading a TileDB-SOMA experiment costs from what training costs: the module is
built as in ``scale.py --soma`` (batch size 256, 90 % training cells, shuffled), its training
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
from scale import peak_rss_mb, soma_context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--memory-budget-mb", type=int)
    parser.add_argument("--io-batch-size", type=int)
    args = parser.parse_args()

    import tiledbsoma as soma
    from scvi.dataloaders import TileDBDataModule

    experiment = soma.Experiment.open(
        str(args.experiment), context=soma_context(args.memory_budget_mb)
    )
    options = {} if args.io_batch_size is None else {"io_batch_size": args.io_batch_size}
    datamodule = TileDBDataModule(
        experiment.axis_query("RNA"),
        layer_name="raw",
        batch_size=256,
        shuffle=True,
        seed=0,
        train_size=0.9,
        split_seed=0,
        batch_column_names=["cell_type"],
        dataloader_kwargs={"num_workers": 0},
        **options,
    )
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
