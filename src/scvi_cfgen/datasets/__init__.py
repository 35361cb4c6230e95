"""Built-in example data sets."""

from ._pbmc3k import pbmc3k

__all__ = ["pbmc3k"]
