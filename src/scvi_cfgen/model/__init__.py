"""User-facing models."""

from ._cfgen import CFGenModel

__all__ = ["CFGenModel"]
