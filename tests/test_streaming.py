"""generate(out=...) writes cells chunk by chunk, with the same cells as in memory."""

import subprocess
import sys
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pytest

from scvi_cfgen._cli import main

FAST = {"seed": 3, "solver": "euler", "n_steps": 4, "batch_size": 64, "progress_bar": False}


def _same_cells(written: ad.AnnData, expected: ad.AnnData) -> None:
    assert written.shape == expected.shape
    assert list(written.var_names) == list(expected.var_names)
    assert list(written.obs_names) == list(expected.obs_names)
    np.testing.assert_array_equal(written.X[:].toarray(), expected.X.toarray())
    for column in expected.obs:
        np.testing.assert_array_equal(
            written.obs[column].to_numpy(), expected.obs[column].to_numpy()
        )


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_streamed_cells_equal_the_cells_in_memory(trained_marker_model, tmp_path, suffix):
    model, _ = trained_marker_model
    expected = model.generate(n_cells=300, conditions={"cell_type": "type1"}, **FAST)
    path = tmp_path / f"cells{suffix}"
    returned = model.generate(n_cells=300, conditions={"cell_type": "type1"}, out=path, **FAST)
    assert returned == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no partial file left
    written = ad.read_h5ad(path, backed="r") if suffix == ".h5ad" else ad.read_zarr(path)
    _same_cells(written, expected)
    assert written.uns["cfgen"]["seed"] == 3
    assert np.issubdtype(written.X.dtype, np.integer)


def test_streaming_refuses_bad_paths_before_any_work(trained_marker_model, tmp_path):
    model, _ = trained_marker_model
    path = tmp_path / "cells.h5ad"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="already exists"):
        model.generate(n_cells=10, out=path, **FAST)
    assert path.read_text() == "keep me"
    model.generate(n_cells=10, out=path, overwrite=True, **FAST)
    assert ad.read_h5ad(path).n_obs == 10
    with pytest.raises(ValueError, match=r"writes .h5ad or .zarr"):
        model.generate(n_cells=10, out=tmp_path / "cells.h5mu", **FAST)
    with pytest.raises(ValueError, match="does not exist"):
        model.generate(n_cells=10, out=tmp_path / "missing" / "cells.h5ad", **FAST)


def test_a_mudata_model_streams_to_h5mu(trained_multiome, tmp_path):
    model, _ = trained_multiome
    expected = model.generate(n_cells=130, **FAST)
    path = model.generate(n_cells=130, out=tmp_path / "cells.h5mu", **FAST)
    written = md.read_h5mu(path)
    for name in expected.mod:
        _same_cells(written[name], expected[name])
    with pytest.raises(ValueError, match=r"writes .h5mu"):
        model.generate(n_cells=10, out=tmp_path / "cells.h5ad", **FAST)


def test_cli_generate_streams_to_its_output(trained_marker_model, tmp_path):
    model, _ = trained_marker_model
    model.save(tmp_path / "model")
    out = tmp_path / "generated.h5ad"
    args = ["generate", str(tmp_path / "model"), "--output", str(out), "--n-cells", "200"]
    assert main([*args, "--solver", "euler", "--n-steps", "4", "--batch-size", "64"]) == 0
    expected = model.generate(n_cells=200, seed=0, solver="euler", n_steps=4, batch_size=64)
    _same_cells(ad.read_h5ad(out, backed="r"), expected)


_PEAK_MEMORY = """
import sys
sys.path.insert(0, {tests!r})
import scvi, scvi_cfgen
from helpers import TINY, make_marker_counts
scvi.settings.seed = 0
adata = make_marker_counts(n_cells=120)
scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
# the empirical size-factor law holds a quantile table per category: sampling must not copy
# it per cell
model = scvi_cfgen.CFGenModel(adata, size_factor_law="empirical", **TINY)
model.train(max_epochs=1, batch_size=32, enable_progress_bar=False)
before = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
model.generate(n_cells={n_cells}, seed=0, solver="euler", n_steps=1, out={out!r},
               progress_bar=False)
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's, via fork)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(before, int(status["VmHWM"].split()[0]) / 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_streaming_memory_is_flat_in_the_number_of_cells(tmp_path):
    peaks, growth = {}, {}
    for n_cells in (20_000, 200_000):
        script = _PEAK_MEMORY.format(
            tests=str(Path(__file__).parent),
            n_cells=n_cells,
            out=str(tmp_path / f"{n_cells}.h5ad"),
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        before, peak = map(float, result.stdout.split()[-2:])
        peaks[n_cells], growth[n_cells] = peak, peak - before
    assert peaks[200_000] <= 1.5 * peaks[20_000]
    # 200k cells x 40 genes in memory take ~130 MB more; streamed, only obs grows with cells
    assert growth[200_000] < 80, growth
