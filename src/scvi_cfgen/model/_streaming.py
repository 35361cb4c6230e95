"""Writing generated cells to disk chunk by chunk (``generate(out=...)``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import anndata as ad
import h5py
import pandas as pd
import scipy.sparse as sp

from ._multimodal import assemble_output
from ._output import OUTPUT_DTYPES

_FORMATS = {False: (".h5ad", ".zarr"), True: (".h5mu",)}


def check_output_path(out: str | Path, multimodal: bool, overwrite: bool) -> Path:
    """The output path, checked before any work: format, existing file, parent directory."""
    path = Path(out)
    allowed = _FORMATS[multimodal]
    if path.suffix not in allowed:
        kind = "a MuData model" if multimodal else "a model set up with AnnData"
        raise ValueError(
            f"`out={str(path)!r}`: {kind} writes {' or '.join(allowed)} files; use one of "
            "these suffixes."
        )
    if path.exists() and not overwrite:
        raise ValueError(f"{str(path)!r} already exists; pass `overwrite=True` to replace it.")
    if not path.parent.is_dir():
        raise ValueError(f"The directory of {str(path)!r} does not exist; create it first.")
    return path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _open(path: Path):
    if path.suffix == ".zarr":
        import zarr

        return zarr.open_group(str(path), mode="a", use_consolidated=False)
    return h5py.File(path, "a")


def write_streamed(
    path: Path,
    chunks: Iterable[Mapping[str, sp.csr_matrix]],
    modalities: tuple[str, ...],
    var_names: Mapping[str, pd.Index],
    modality_names: Mapping[str, str] | None,
    obs: pd.DataFrame,
    uns: dict,
    overwrite: bool,
) -> Path:
    """Write ``obs``, ``var`` and ``uns`` first, then append each chunk's counts to ``X``.

    The file is laid out by anndata/mudata's own writers (an output with empty count matrices),
    then each modality's ``X`` is replaced by a CSR matrix grown one chunk at a time, so only one
    chunk of counts is ever in memory. It is written under a temporary name and renamed when
    complete: an interrupted call leaves no half-written file under ``path``.
    """
    n_cells = len(obs)
    empty = {
        role: sp.csr_matrix((n_cells, len(var_names[role])), dtype=OUTPUT_DTYPES[role])
        for role in modalities
    }
    skeleton = assemble_output(empty, obs, var_names, modality_names, uns)
    partial = path.with_name(path.name + ".partial" + path.suffix)
    _remove(partial)
    if path.suffix == ".zarr":
        skeleton.write_zarr(partial)
    elif path.suffix == ".h5mu":
        skeleton.write(partial)
    else:
        skeleton.write_h5ad(partial)
    groups = {
        role: "" if modality_names is None else f"mod/{modality_names[role]}"
        for role in modalities
    }
    store = _open(partial)
    try:
        datasets = {}
        for chunk in chunks:
            for role, matrix in chunk.items():
                if role in datasets:
                    datasets[role].append(matrix)
                    continue
                group = store[groups[role]] if groups[role] else store
                del group["X"]
                ad.io.write_elem(group, "X", matrix)
                datasets[role] = ad.io.sparse_dataset(group["X"])
    finally:
        if isinstance(store, h5py.File):
            store.close()
    if path.suffix == ".zarr":  # anndata reads the consolidated metadata: bring it up to date
        import zarr

        zarr.consolidate_metadata(str(partial))
    if overwrite:
        _remove(path)
    partial.rename(path)
    return path
