"""Lightning callbacks of a CFGen training stage: fault guard, checkpoints, progress, stopping."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from scvi.train._callbacks import LoudEarlyStopping
from scvi.train._progress import ProgressBar
from scvi.utils import track

#: Likely causes of a non-finite loss, and what to try, per stage.
_NON_FINITE_CAUSES = {
    "autoencoder": (
        "a learning rate too high for these data (try `plan_kwargs={'autoencoder': {'lr': "
        "1e-4}}`) or counts that are not what the model expects (check for extreme values)"
    ),
    "flow": (
        "a learning rate too high for the flow (try `plan_kwargs={'flow': {'lr': 1e-4}}`) or "
        "a diverging autoencoder latent (check `model.get_latent_representation()` for "
        "extreme values)"
    ),
}


class NonFiniteLossError(ValueError):
    """A training loss became NaN or infinite; the model keeps its last good weights."""


def _loss_of(outputs) -> torch.Tensor | None:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return outputs if isinstance(outputs, torch.Tensor) else None


class FaultGuard(Callback):
    """Stop a stage on a NaN or infinite training loss, and keep the last good weights.

    At the end of every epoch whose losses were all finite, the weights of the part of the
    module this stage trains are copied (to the CPU) as the last good ones. A non-finite
    minibatch loss raises :class:`NonFiniteLossError` naming the stage, epoch, step and likely
    cause; the training loop then puts them back with :meth:`restore`. A ``KeyboardInterrupt``
    is remembered in :attr:`interrupted` (Lightning turns it into ``SystemExit``; the model
    turns it back).
    """

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage
        self.last_good_state: dict | None = None
        self.last_good_epoch: int | None = None
        self.interrupted = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Raise if this minibatch's loss is not finite."""
        loss = _loss_of(outputs)
        if loss is None or bool(torch.isfinite(loss.detach()).all()):
            return
        kept = (
            f"the weights of the end of epoch {self.last_good_epoch + 1}"
            if self.last_good_epoch is not None
            else "the weights from before this stage"
        )
        raise NonFiniteLossError(
            f"The {self.stage} stage's training loss became {float(loss.detach())} at epoch "
            f"{trainer.current_epoch + 1}, optimiser step {trainer.global_step}. Likely cause: "
            f"{_NON_FINITE_CAUSES.get(self.stage, 'a learning rate too high')}. The model "
            f"keeps {kept}; the {self.stage} is not marked as trained."
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Remember this epoch's weights of the part being trained as the last good ones."""
        self.last_good_state = {
            key: value.detach().to("cpu", copy=True)
            for key, value in self.trained_part(pl_module.module).state_dict().items()
        }
        self.last_good_epoch = trainer.current_epoch

    def trained_part(self, module: torch.nn.Module) -> torch.nn.Module:
        """The submodule this stage trains (``module.autoencoder`` or ``module.flow``), if any."""
        return getattr(module, self.stage, module)

    def restore(self, module: torch.nn.Module) -> bool:
        """Load the last good weights into ``module``; ``False`` if there are none."""
        if self.last_good_state is None:
            return False
        self.trained_part(module).load_state_dict(self.last_good_state)
        return True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Remember an interruption by the user."""
        self.interrupted = isinstance(exception, KeyboardInterrupt)


class EpochCheckpoint(Callback):
    """Write a Lightning checkpoint of the stage at the end of an epoch, at most every ``every_s``.

    The checkpoint (weights, optimiser, learning-rate scheduler, early-stopping state, epoch) is
    written to a temporary file and renamed, so an interruption while writing never leaves a
    truncated checkpoint. ``trainer.fit(ckpt_path=path)`` resumes from it.
    """

    def __init__(self, path: str | Path, every_s: float = 60.0):
        super().__init__()
        self.path = Path(path)
        self.every_s = float(every_s)
        self._last_write = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Checkpoint if ``every_s`` seconds have passed since the last one."""
        if time.monotonic() - self._last_write < self.every_s:
            return
        self.write(trainer)

    def write(self, trainer) -> None:
        """Write the checkpoint now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        self._last_write = time.monotonic()


class QuietEarlyStopping(LoudEarlyStopping):
    """scvi-tools' early stopping, without printing: the stage summary reports the stop."""

    def teardown(self, trainer, pl_module, stage: str | None = None) -> None:
        """Print nothing (scvi-tools prints the reason here)."""


class StageProgressBar(ProgressBar):
    """scvi-tools' per-epoch progress bar, naming the stage and ending with why it stopped."""

    def __init__(self, stage: str, refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate)
        self.stage = stage

    def init_train_tqdm(self, trainer):
        """The bar of this stage, named after it."""
        return track(
            None,
            total=trainer.max_epochs,
            description=f"Training the {self.stage}",
            style="tqdm",
            disable=self.is_disabled,
        )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        """Show the stage and epoch."""
        ProgressBarBase.on_train_epoch_start(self, trainer, pl_module)
        if self.is_enabled:
            self.main_progress_bar.set_description(
                f"{self.stage} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                refresh=False,
            )

    def get_metrics(self, trainer, pl_module) -> dict:
        """The logged metrics, without Lightning's logger version number."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        validation = trainer.callback_metrics.get("validation_loss")
        if validation is not None and "validation_loss" not in metrics:
            metrics["validation_loss"] = f"{float(validation):.4g}"
        return metrics

    def on_train_end(self, trainer, pl_module) -> None:
        """Leave one line saying how the stage ended."""
        if self.is_enabled:
            self.main_progress_bar.set_description(f"{self.stage}: {stop_reason(trainer)}")
        super().on_train_end(trainer, pl_module)


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def stage_summary(trainer) -> dict:
    """How a finished stage ended: reason, epochs, optimiser steps, best validation loss."""
    stopper = trainer.early_stopping_callback
    early = stopper is not None and getattr(stopper, "stopped_epoch", 0) > 0
    best = _finite(getattr(stopper, "best_score", None)) if stopper is not None else None
    if best is None:
        best = _finite(trainer.callback_metrics.get("validation_loss"))
    return {
        "stopped_by": "early stopping" if early else "budget",
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "validation_loss": best,
    }


def stop_reason(trainer) -> str:
    """One line: why and when the stage stopped, and its best validation loss."""
    summary = stage_summary(trainer)
    if summary["stopped_by"] == "early stopping":
        patience = trainer.early_stopping_callback.patience
        text = (
            f"stopped early at step {summary['steps']:,} (epoch {summary['epochs']}): no "
            f"improvement in {patience} epochs"
        )
    else:
        text = f"budget reached ({summary['steps']:,} steps, {summary['epochs']} epochs)"
    if summary["validation_loss"] is not None:
        text += f"; best validation loss {summary['validation_loss']:.4g}"
    return text
