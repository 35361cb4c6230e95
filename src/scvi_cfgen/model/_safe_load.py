"""Reading a saved model without unpickling arbitrary objects."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

#: ``(module, name)`` pairs a model file may reference: tensors and storages, containers,
#: numpy arrays (feature names, category mappings) and the pandas frames of the training
#: history. Their unpickling builds data, never calls arbitrary code.
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "set"),
    ("builtins", "slice"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("pandas", "DataFrame"),
    ("pandas.core.frame", "DataFrame"),  # pandas < 3 pickles classes under their modules
    ("pandas.core.indexes.base", "Index"),
    ("pandas", "Index"),
    ("pandas", "RangeIndex"),
    ("pandas", "StringDtype"),
    ("pandas.arrays", "StringArray"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    # the same classes as pandas 2 pickles them (e.g. next to tiledbsoma, which needs pandas < 3)
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"),
}


def _placeholder(*args, **kwargs) -> None:
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """The restricted unpickler of Python's ``pickle`` docs, over a torch archive's pickle."""

    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins"}.get(module, module)
        allowed = (module, name) in _ALLOWED_GLOBALS
        allowed |= module == "torch" and name.endswith("Storage")
        allowed |= module.startswith("numpy") and name.endswith("DType")
        if not allowed:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")
        if module.startswith("torch"):
            return _placeholder  # tensors are not needed to check the globals
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return None  # tensor storages are not needed to check the globals


def _check_pickle(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(names) != 1:
            raise ValueError(f"{str(path)!r} is not a torch archive (no single data.pkl).")
        with archive.open(names[0]) as handle:
            return _RestrictedUnpickler(handle).load()


def check_model_directory(dir_path: Path, prefix: str | None = None) -> dict:
    """Check that ``dir_path`` holds a readable, safe model file; return what it holds.

    Tensors in the returned dict are placeholders (``None``): it is for reading the saved
    registry and attributes before the model is loaded, not for the weights.

    Raises
    ------
    ValueError
        The directory or its ``model.pt`` is missing, the file is truncated or not a torch
        archive, or it holds objects other than tensors, containers, strings, numbers and numpy
        arrays (``torch.load(weights_only=True)`` refuses them).
    """
    if not dir_path.is_dir():
        raise ValueError(f"No model directory at {str(dir_path)!r}; save one with `model.save`.")
    path = dir_path / f"{prefix or ''}model.pt"
    if not path.is_file():
        found = sorted(p.name for p in dir_path.iterdir())[:10]
        raise ValueError(
            f"{str(path)!r} not found, so {str(dir_path)!r} does not hold a model saved by "
            f"`model.save` (it holds {found or 'nothing'}). Check the path and `prefix`."
        )
    try:
        content = _check_pickle(path)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{str(path)!r} holds objects that a model file does not need, and loading it "
            f"could run code ({error.__class__.__name__}: {str(error).splitlines()[0]}). It was "
            "not written by scvi-cfgen: load only models from sources you trust."
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.PickleError) as error:
        raise ValueError(
            f"Could not read {str(path)!r}: the file is truncated or is not a saved model "
            f"({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            "Save the model again."
        ) from None
    expected = {"model_state_dict", "attr_dict"}
    if not isinstance(content, dict) or not expected <= set(content):
        raise ValueError(
            f"{str(path)!r} is a torch file but not a saved scvi-tools model (it lacks "
            f"{sorted(expected)}). Save the model again with `model.save`."
        )
    return content
