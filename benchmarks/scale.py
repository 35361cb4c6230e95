"""How training time and memory scale with the number of cells, training from a backed h5ad.

For each size in ``--cells``, a synthetic CSR count set (cells x 2,000 genes, negative binomial
counts of a few cell types, ~9 % non-zero) is written chunk by chunk to ``DIR/counts_<n>.h5ad``
(never held in memory whole; reused when present). Then, in a separate subprocess per size (so
each peak RSS is that size's alone):

- CFGen with the package defaults is set up on ``anndata.read_h5ad(path, backed="r")`` and
  trains one epoch of each stage (early stopping off): seconds per epoch of each stage (from a
  Lightning callback, validation included) and of each ``train_*`` call (which adds the passes
  over the counts for the data statistics, the latent statistics and the flow's latent table);
- it generates 10,000 cells (cells per second), next to the NB floor measured in the same
  process: drawing the same number of cells' counts alone with scvi-tools'
  ``NegativeBinomial`` for decoded means;
- the subprocess's peak resident memory (``VmHWM``) after training (``train_peak_rss_mb``) and
  at the end, generation included (``peak_rss_mb``).

The same is measured for scVI (``scvi.model.SCVI``, one epoch, same backed data) in its own
subprocess, unless ``--skip-scvi``; with ``--in-memory``, CFGen is also run on the same cells
loaded in memory (columns ``memory_*``), for the cost of reading from disk. With ``--soma`` (needs
the ``[soma]`` extra), the cells are also written, chunk by chunk, as a TileDB-SOMA experiment
(``DIR/soma_<n>``) and CFGen trains from it through scvi-tools' ``TileDBDataModule``
(``train_autoencoder``/``train_flow`` with ``datamodule=``; columns ``soma_*``). Each
subprocess also records its resident memory after the imports (``import_rss_mb``), the part that
does not depend on the data. Results go to ``DIR/scale.csv`` and ``DIR/scale.md``.

Run: ``python benchmarks/scale.py [--cells 50000 200000 1000000] [--out DIR] [--skip-scvi]
[--in-memory] [--soma]``.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

N_GENES = 2000
N_TYPES = 5
WRITE_CHUNK_ROWS = 10_000
N_GENERATED = 10_000
BATCH_SIZE = 256


# ------------------------------------------------------------------ synthetic data
def _type_means(rng: np.random.Generator) -> np.ndarray:
    """Relative expression ``(N_TYPES, N_GENES)``: a shared profile, 40 markers per type."""
    base = rng.lognormal(mean=0.0, sigma=2.5, size=N_GENES)
    means = np.tile(base, (N_TYPES, 1))
    for cell_type in range(N_TYPES):
        markers = rng.choice(N_GENES, size=40, replace=False)
        means[cell_type, markers] *= 10.0
    return means / means.sum(axis=1, keepdims=True)


def write_counts(path: Path, n_cells: int, seed: int = 0) -> None:
    """Write ``n_cells`` x ``N_GENES`` NB counts as a CSR h5ad, ``WRITE_CHUNK_ROWS`` at a time."""
    rng = np.random.default_rng(seed)
    proportions = _type_means(rng)
    types = rng.integers(N_TYPES, size=n_cells)
    theta = 2.0
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(types, [f"type{i}" for i in range(N_TYPES)])},
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(N_GENES)])

    def chunk(start: int) -> sp.csr_matrix:
        rows = types[start : start + WRITE_CHUNK_ROWS]
        library = rng.lognormal(np.log(500.0), 0.4, size=len(rows))
        mu = proportions[rows] * library[:, None]
        counts = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float32)
        counts[:, -1] += 1  # no cell without counts
        return sp.csr_matrix(counts)

    partial = path.with_suffix(".partial.h5ad")
    ad.AnnData(X=chunk(0), obs=obs.iloc[: min(WRITE_CHUNK_ROWS, n_cells)], var=var).write_h5ad(
        partial
    )
    with h5py.File(partial, "a") as file:
        matrix = ad.io.sparse_dataset(file["X"])
        for start in range(WRITE_CHUNK_ROWS, n_cells, WRITE_CHUNK_ROWS):
            matrix.append(chunk(start))
        del file["obs"]
        ad.io.write_elem(file, "obs", obs)
    partial.rename(path)


def counts_file(out: Path, n_cells: int) -> Path:
    path = out / f"counts_{n_cells}.h5ad"
    if not path.exists():
        began = time.perf_counter()
        write_counts(path, n_cells)
        print(f"wrote {path} in {time.perf_counter() - began:.0f} s", flush=True)
    return path


def soma_experiment(path: Path) -> Path:
    """The counts of ``path`` as a SOMA experiment (layer ``raw`` of measurement ``RNA``).

    Written ``WRITE_CHUNK_ROWS`` rows at a time from the backed h5ad; reused when present.
    """
    import pyarrow as pa
    import tiledbsoma as soma

    uri = path.parent / f"soma_{path.stem.removeprefix('counts_')}"
    if uri.exists():
        return uri
    began = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r")
    n_cells, n_genes = adata.shape
    partial = uri.with_name(uri.name + "_partial")
    with soma.Experiment.create(str(partial)) as experiment:
        obs = pa.table(
            {
                "soma_joinid": np.arange(n_cells, dtype=np.int64),
                "obs_id": adata.obs_names.astype(str).to_numpy(),
                "cell_type": adata.obs["cell_type"].astype(str).to_numpy(),
            }
        )
        frame = experiment.add_new_dataframe(
            "obs", schema=obs.schema, index_column_names=["soma_joinid"], domain=[[0, n_cells - 1]]
        )
        frame.write(obs)
        measurement = experiment.add_new_collection("ms").add_new_collection(
            "RNA", soma.Measurement
        )
        var = pa.table(
            {
                "soma_joinid": np.arange(n_genes, dtype=np.int64),
                "var_id": adata.var_names.astype(str).to_numpy(),
            }
        )
        frame = measurement.add_new_dataframe(
            "var", schema=var.schema, index_column_names=["soma_joinid"], domain=[[0, n_genes - 1]]
        )
        frame.write(var)
        raw = measurement.add_new_collection("X").add_new_sparse_ndarray(
            "raw", type=pa.float32(), shape=(n_cells, n_genes)
        )
        for start in range(0, n_cells, WRITE_CHUNK_ROWS):
            block = sp.coo_matrix(adata.X[start : start + WRITE_CHUNK_ROWS])
            raw.write(
                pa.table(
                    {
                        "soma_dim_0": (block.row + start).astype(np.int64),
                        "soma_dim_1": block.col.astype(np.int64),
                        "soma_data": block.data.astype(np.float32),
                    }
                )
            )
    partial.rename(uri)
    print(f"wrote {uri} in {time.perf_counter() - began:.0f} s", flush=True)
    return uri


# ------------------------------------------------------------------ measurements (subprocess)
def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``VmHWM``; ``ru_maxrss`` where there is no /proc)."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory of this process now (NaN where there is no /proc)."""
    now = _proc_status_mb("VmRSS")
    return float("nan") if now is None else now


def _epoch_timer():
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        """Seconds of each training epoch (its validation included)."""

        def __init__(self):
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self._began = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds.append(time.perf_counter() - self._began)

    return EpochTimer()


def _stage_kwargs(timer) -> dict:
    return {
        "max_epochs": 1,
        "batch_size": BATCH_SIZE,
        "early_stopping": False,
        "enable_progress_bar": False,
        "callbacks": [timer],
    }


def nb_floor_cells_per_second(model, n_cells: int) -> float:
    """Cells per second of drawing NB counts alone, for decoded means of random latents."""
    import torch
    from scvi.distributions import NegativeBinomial

    module = model.module
    with torch.inference_mode():
        latent = module.unstandardize_latent(torch.randn(n_cells, module.n_latent))
        library = torch.exp(module.statistics.sample_log_library(None, n_cells))
        nb = module.autoencoder.count_distribution(latent, library, None)
        mu, theta = nb.mu.contiguous(), nb.theta.expand_as(nb.mu).contiguous()
        began = time.perf_counter()
        for rows in np.array_split(np.arange(n_cells), max(1, n_cells // 1024)):
            NegativeBinomial(mu=mu[rows], theta=theta[rows]).sample()
    return n_cells / (time.perf_counter() - began)


def measure_cfgen(path: Path, backed: bool = True) -> dict:
    import scvi_cfgen

    result = {}
    began = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r" if backed else None)
    scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    model = scvi_cfgen.CFGenModel(adata)
    result["setup_s"] = time.perf_counter() - began
    for stage, train in (("autoencoder", model.train_autoencoder), ("flow", model.train_flow)):
        timer = _epoch_timer()
        began = time.perf_counter()
        train(**_stage_kwargs(timer))
        result[f"{stage}_call_s"] = time.perf_counter() - began
        result[f"{stage}_epoch_s"] = timer.seconds[0]
    result["train_peak_rss_mb"] = peak_rss_mb()
    if not backed:  # generation does not read the data: timed once, on the backed run
        return result
    began = time.perf_counter()
    model.generate(n_cells=N_GENERATED, seed=0, progress_bar=False)
    result["generate_cells_per_s"] = N_GENERATED / (time.perf_counter() - began)
    result["nb_floor_cells_per_s"] = nb_floor_cells_per_second(model, N_GENERATED)
    return result


def soma_context(memory_budget_mb: int | None):
    """A TileDB-SOMA context whose reads hold at most ``memory_budget_mb`` (``None``: TileDB's).

    TileDB's default read budget (``sm.mem.total_budget``, 10 GB) lets a shuffled read, whose
    cells lie all over the array, load most of the array's tiles at once; a budget bounds it.
    A quarter of the budget goes to the result buffers (``soma.init_buffer_bytes``).
    """
    import tiledbsoma as soma

    if memory_budget_mb is None:
        return None
    budget = memory_budget_mb * 2**20
    return soma.SOMATileDBContext(
        tiledb_config={
            "sm.mem.total_budget": str(budget),
            "soma.init_buffer_bytes": str(budget // 4),
        }
    )


def soma_datamodule(
    path: Path, io_batch_size: int | None = None, memory_budget_mb: int | None = None
):
    """``TileDBDataModule`` over the SOMA experiment at ``path`` (shuffled, 90 % training cells).

    ``io_batch_size``: cells read from disk at once by ``tiledbsoma_ml`` (its default when
    ``None``); ``memory_budget_mb``: TileDB's read budget (:func:`soma_context`).
    """
    import tiledbsoma as soma
    from scvi.dataloaders import TileDBDataModule

    dataset_kwargs = {} if io_batch_size is None else {"io_batch_size": io_batch_size}
    experiment = soma.Experiment.open(str(path), context=soma_context(memory_budget_mb))
    return TileDBDataModule(
        experiment.axis_query("RNA"),
        layer_name="raw",
        batch_size=BATCH_SIZE,
        shuffle=True,
        seed=0,
        train_size=0.9,
        split_seed=0,
        batch_column_names=["cell_type"],
        dataloader_kwargs={"num_workers": 0},
        **dataset_kwargs,
    )


def measure_cfgen_soma(
    path: Path, io_batch_size: int | None = None, memory_budget_mb: int | None = None
) -> dict:
    """CFGen trained through :func:`soma_datamodule` from the SOMA experiment at ``path``."""
    from tiledbsoma_ml.dataset import DEFAULT_IO_BATCH_SIZE

    import scvi_cfgen

    result = {}
    began = time.perf_counter()
    datamodule = soma_datamodule(path, io_batch_size, memory_budget_mb)
    registry = scvi_cfgen.CFGenModel.registry_from_datamodule(
        datamodule, attributes=["cell_type"], gene_names="var_id"
    )
    model = scvi_cfgen.CFGenModel(adata=None, registry=registry)
    result["setup_s"] = time.perf_counter() - began
    result["io_batch_size"] = io_batch_size or DEFAULT_IO_BATCH_SIZE
    result["tiledb_budget_mb"] = memory_budget_mb or float("nan")
    result["setup_peak_rss_mb"] = peak_rss_mb()
    for stage, train in (("autoencoder", model.train_autoencoder), ("flow", model.train_flow)):
        timer = _epoch_timer()
        kwargs = {**_stage_kwargs(timer), "datamodule": datamodule}
        del kwargs["batch_size"]  # the data module's
        began = time.perf_counter()
        train(**kwargs)
        result[f"{stage}_call_s"] = time.perf_counter() - began
        result[f"{stage}_epoch_s"] = timer.seconds[0]
        result[f"{stage}_peak_rss_mb"] = peak_rss_mb()
        result[f"{stage}_rss_mb"] = rss_mb()
    result["train_peak_rss_mb"] = peak_rss_mb()
    return result


def measure_scvi(path: Path) -> dict:
    import scvi

    began = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r")
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata)
    setup = time.perf_counter() - began
    timer = _epoch_timer()
    began = time.perf_counter()
    model.train(**_stage_kwargs(timer))
    return {"setup_s": setup, "call_s": time.perf_counter() - began, "epoch_s": timer.seconds[0]}


WORKERS = {
    "cfgen": ("", lambda path: measure_cfgen(path, backed=True)),
    "cfgen_memory": ("memory_", lambda path: measure_cfgen(path, backed=False)),
    "cfgen_soma": ("soma_", measure_cfgen_soma),
    "scvi": ("scvi_", measure_scvi),
}


def worker(model: str, path: Path, result_path: Path, soma_options: dict) -> None:
    import scvi

    import scvi_cfgen  # noqa: F401  (imported before the baseline memory is read)

    scvi.settings.seed = 0
    prefix, measure = WORKERS[model]
    imported = rss_mb()
    result = measure(path, **soma_options) if model == "cfgen_soma" else measure(path)
    result["peak_rss_mb"] = peak_rss_mb()
    result["import_rss_mb"] = imported
    result_path.write_text(json.dumps({f"{prefix}{k}": v for k, v in result.items()}))


# ------------------------------------------------------------------ driver
def run_worker(model: str, path: Path, out: Path, soma_options: dict | None = None) -> dict:
    result_path = out / f"{path.stem}_{model}.json"
    log = out / f"{path.stem}_{model}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", model]
    command += ["--h5ad", str(path)]
    command += ["--result", str(result_path)]
    for name, value in (soma_options or {}).items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    with log.open("w") as stream:
        done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"The {model} run on {path} failed; see {log}.")
    return json.loads(result_path.read_text())


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({"cells": rows["cells"], "file_mb": rows["file_mb"]})
    for column in ("autoencoder_epoch_s", "flow_epoch_s", "autoencoder_call_s", "flow_call_s"):
        table[column] = rows[column]
    table["import_rss_mb"] = rows["import_rss_mb"]
    table["train_peak_rss_mb"] = rows["train_peak_rss_mb"]
    table["peak_rss_mb"] = rows["peak_rss_mb"]
    if "memory_train_peak_rss_mb" in rows:
        table["memory_autoencoder_epoch_s"] = rows["memory_autoencoder_epoch_s"]
        table["memory_flow_epoch_s"] = rows["memory_flow_epoch_s"]
        table["memory_train_peak_rss_mb"] = rows["memory_train_peak_rss_mb"]
    if "soma_train_peak_rss_mb" in rows:
        for column in ("autoencoder_epoch_s", "flow_epoch_s", "autoencoder_call_s", "flow_call_s"):
            table[f"soma_{column}"] = rows[f"soma_{column}"]
        table["soma_train_peak_rss_mb"] = rows["soma_train_peak_rss_mb"]
        table["soma_io_batch_size"] = rows.get("soma_io_batch_size")
        table["soma_tiledb_budget_mb"] = rows.get("soma_tiledb_budget_mb")
    if "scvi_epoch_s" in rows:
        table["scvi_epoch_s"] = rows["scvi_epoch_s"]
        table["scvi_peak_rss_mb"] = rows["scvi_peak_rss_mb"]
        table["cfgen_over_scvi_epoch"] = (
            rows["autoencoder_epoch_s"] + rows["flow_epoch_s"]
        ) / rows["scvi_epoch_s"]
    table["generate_cells_per_s"] = rows["generate_cells_per_s"]
    table["nb_floor_cells_per_s"] = rows["nb_floor_cells_per_s"]
    table["generate_over_floor"] = rows["generate_cells_per_s"] / rows["nb_floor_cells_per_s"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=int, default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path("benchmark_output/scale"))
    parser.add_argument("--skip-scvi", action="store_true", help="do not time scVI")
    parser.add_argument(
        "--in-memory", action="store_true", help="also train CFGen on the cells in memory"
    )
    parser.add_argument(
        "--soma",
        action="store_true",
        help="also train CFGen from the cells written as a TileDB-SOMA experiment ([soma] extra)",
    )
    parser.add_argument(
        "--io-batch-size",
        type=int,
        help="cells tiledbsoma_ml reads at once for --soma (default: its own, 65,536); results "
        "are named by size only, so give each setting its own --out",
    )
    parser.add_argument(
        "--memory-budget-mb",
        type=int,
        help="TileDB read budget for --soma (sm.mem.total_budget; default: TileDB's, 10 GB); "
        "give each setting its own --out",
    )
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--h5ad", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    soma_options = {"io_batch_size": args.io_batch_size, "memory_budget_mb": args.memory_budget_mb}
    if args.worker:
        worker(args.worker, args.h5ad, args.result, soma_options)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n_cells in args.cells:
        path = counts_file(args.out, n_cells)
        row = {"cells": n_cells, "file_mb": path.stat().st_size / 2**20}
        row.update(run_worker("cfgen", path, args.out))
        if args.in_memory:
            row.update(run_worker("cfgen_memory", path, args.out))
        if args.soma:
            experiment = soma_experiment(path)
            row.update(run_worker("cfgen_soma", experiment, args.out, soma_options))
        if not args.skip_scvi:
            row.update(run_worker("scvi", path, args.out))
        rows.append(row)
        print(pd.Series(row).round(3).to_string(), flush=True)
    table = summarise(pd.DataFrame(rows))
    table.to_csv(args.out / "scale.csv", index=False)
    (args.out / "scale.md").write_text(table.round(2).to_markdown(index=False) + "\n")
    print(table.round(2).to_markdown(index=False))


if __name__ == "__main__":
    main()
