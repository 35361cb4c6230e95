"""Keep library noise that a user cannot act on out of the training output."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Lightning's loggers: device banners ("GPU available: ..."), tips and "`Trainer.fit` stopped".
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")

#: Warnings about how the package drives Lightning, not about the user's data or settings.
_INTERNAL_WARNINGS = (
    r".*does not have many workers.*",  # in-memory AnnData: scvi-tools' 0 workers is right
    r".*module\(s\) in eval mode.*",  # the frozen autoencoder during the flow stage, on purpose
    r".*smaller than the logging interval.*",
    r".*isinstance\(treespec, LeafSpec\).*",  # torch/Lightning internals
    r".*The '.*_dataloader' does not have many workers.*",
)


@contextmanager
def quiet_lightning(verbose: bool = False) -> Iterator[None]:
    """Silence Lightning's banners and internal warnings for the duration of a stage.

    Warnings about the user's data or hardware (e.g. "GPU available but not used") still show.
    With ``verbose`` nothing is filtered.
    """
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in _INTERNAL_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\.")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
