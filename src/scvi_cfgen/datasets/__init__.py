"""Built-in example data sets."""

from ._pbmc3k import pbmc3k
from ._synthetic_multiome import synthetic_multiome

__all__ = ["pbmc3k", "synthetic_multiome"]
