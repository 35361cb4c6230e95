"""scvi-cfgen: CFGen for scvi-tools, generating realistic single-cell counts."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, metrics, module, pl, train
from .model import CFGenModel

try:
    __version__ = version("scvi-cfgen")
except PackageNotFoundError:  # pragma: no cover - source tree without installation
    __version__ = "0.0.0"

__all__ = ["CFGenModel", "datasets", "metrics", "module", "pl", "train"]
