"""The Lightning trainer settings and callbacks of one training stage."""

from __future__ import annotations

import math
import warnings

from scvi_cfgen.train._callbacks import (
    EpochCheckpoint,
    FaultGuard,
    QuietEarlyStopping,
    StageProgressBar,
)

from ._checkpoints import TrainingCheckpoints
from ._schedule import (
    EARLY_STOPPING_PATIENCE_STEPS,
    LR_PATIENCE_STEPS,
    MAX_STEPS,
    MIN_PATIENCE_EPOCHS,
    epochs_for_steps,
)


def stage_trainer_kwargs(
    stage: str,
    trainer_kwargs: dict,
    n_steps: int,
    n_validation: int,
    early_stopping: bool,
    checkpoints: TrainingCheckpoints | None,
    checkpoint_interval: float,
    resume: bool,
) -> tuple[dict, FaultGuard]:
    """Keyword arguments of scvi's ``Trainer`` for ``stage``, and the stage's fault guard.

    Adds the callbacks every stage trains with: the :class:`FaultGuard`, scvi's early stopping
    without its print (patience in epochs of 200 optimiser steps unless given), a progress bar
    named after the stage and, with ``checkpoints``, periodic Lightning checkpoints (resumed from
    with ``resume``). The user's ``callbacks`` and ``early_stopping_*`` keywords are kept.
    """
    kwargs = dict(trainer_kwargs)
    kwargs.setdefault("check_val_every_n_epoch", 1 if n_validation > 0 else None)
    kwargs.setdefault("log_every_n_steps", max(1, min(10, n_steps)))
    guard = FaultGuard(stage)
    callbacks = [*kwargs.pop("callbacks", []), guard]
    if kwargs.pop("early_stopping", early_stopping):
        callbacks.append(
            QuietEarlyStopping(
                monitor=kwargs.pop("early_stopping_monitor", "validation_loss"),
                patience=kwargs.pop(
                    "early_stopping_patience",
                    epochs_for_steps(EARLY_STOPPING_PATIENCE_STEPS, n_steps, MIN_PATIENCE_EPOCHS),
                ),
                min_delta=kwargs.pop("early_stopping_min_delta", 0.0),
                mode=kwargs.pop("early_stopping_mode", "min"),
                warmup_epochs=kwargs.pop("early_stopping_warmup_epochs", 0),
            )
        )
    if kwargs.get("enable_progress_bar", True) and kwargs.get("simple_progress_bar", True):
        callbacks.append(StageProgressBar(stage, kwargs.pop("progress_bar_refresh_rate", 1)))
        kwargs["simple_progress_bar"] = False
    if checkpoints is not None:
        callbacks.append(EpochCheckpoint(checkpoints.stage_checkpoint(stage), checkpoint_interval))
        if resume:
            kwargs.setdefault("ckpt_path", checkpoints.resume_from(stage))
    kwargs["callbacks"] = callbacks
    return kwargs, guard


def data_parallel_processes(
    accelerator: str, devices: int | list[int] | str, trainer_kwargs: dict
) -> int:
    """Processes that share each epoch's cells: devices per node x ``num_nodes``.

    Under DDP each process draws its own share of the cells (Lightning's distributed sampler;
    TileDB-SOMA's loader shards by rank too), so an epoch holds fewer optimiser steps per
    process than on one device; budgets and patience counted in steps must use the per-process
    count. With ``use_distributed_sampler=False`` every process reads every cell.
    """
    from scvi.model._utils import parse_device_args

    if trainer_kwargs.get("use_distributed_sampler") is False:  # every process reads it all
        return 1
    _, lightning_devices, _ = parse_device_args(accelerator, devices, return_device="torch")
    if isinstance(lightning_devices, (list, tuple)):
        n_devices = len(lightning_devices)
    else:
        n_devices = int(lightning_devices)
    return max(1, n_devices) * max(1, int(trainer_kwargs.get("num_nodes") or 1))


def steps_per_process(n_steps: int, n_processes: int) -> int:
    """Optimiser steps per epoch of each of ``n_processes`` processes sharing ``n_steps``."""
    return max(1, math.ceil(n_steps / n_processes))


def stage_schedule(
    stage: str,
    n_steps: int,
    n_validation: int,
    max_epochs: int | None,
    plan_kwargs: dict,
    early_stopping: bool,
    n_processes: int,
) -> tuple[int, dict, bool, int]:
    """A stage's budget and schedules in epochs, from its default settings in optimiser steps.

    ``n_steps`` is the split's steps per epoch on one process. Returns the epochs at most, the
    plan's keyword arguments (the flow's learning-rate patience added), whether early stopping
    stays on (not without validation cells) and the steps per epoch of each process.
    """
    n_steps = steps_per_process(n_steps, n_processes)
    if max_epochs is None:
        max_epochs = epochs_for_steps(MAX_STEPS[stage], n_steps)
    plan_kwargs = dict(plan_kwargs)
    if stage == "flow":
        plan_kwargs.setdefault(
            "lr_patience", epochs_for_steps(LR_PATIENCE_STEPS, n_steps, MIN_PATIENCE_EPOCHS)
        )
    if n_validation == 0:
        if early_stopping:
            warnings.warn(
                "No validation cells (train_size=1.0): early stopping and the flow's "
                "learning-rate schedule on validation loss are off.",
                UserWarning,
                stacklevel=4,
            )
        early_stopping = False
        if stage == "flow":
            plan_kwargs.setdefault("reduce_lr_on_plateau", False)
    return max_epochs, plan_kwargs, early_stopping, n_steps
