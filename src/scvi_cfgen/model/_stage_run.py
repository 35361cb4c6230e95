"""Running one training stage of a model, with its failure rollback."""

from __future__ import annotations

import copy
import logging
import signal
import threading

from scvi import settings

from scvi_cfgen.train._callbacks import stage_summary
from scvi_cfgen.train._quiet import quiet_lightning

from ._checkpoints import TrainingCheckpoints
from ._clusters import drop_clusters
from ._flow_conditioning import prepare_flow_conditioning
from ._model_state import trained_stages
from ._stage_trainer import data_parallel_processes, stage_schedule, stage_trainer_kwargs
from ._training_split import (
    fit_split_latent_statistics,
    flow_table_split,
    is_streamed,
    split_sizes,
)

logger = logging.getLogger(__name__)


def adopt_finished_stage(model, stage: str, state: dict, splitter) -> None:
    """Take a stage's weights from a resumed run in which it had finished."""
    if stage == "flow":  # clusters of the same latents and seed: the saved shapes
        prepare_flow_conditioning(model, splitter)
    model.module.load_state_dict(state)
    if stage == "autoencoder":
        fit_split_latent_statistics(model, splitter)
        drop_clusters(model)
    model.train_indices, model.validation_indices = splitter.train_idx, splitter.val_idx
    model.trained_stages_ = [*(s for s in trained_stages(model) if s != stage), stage]
    model.is_trained_ = "flow" in model.trained_stages_
    model.module.eval()
    logger.info("The %s had finished in the resumed run; its weights are loaded.", stage)


def run_stage(
    model,
    stage,
    splitter,
    max_epochs,
    plan_kwargs,
    accelerator,
    devices,
    early_stopping,
    trainer_config,
    trainer_kwargs,
    checkpoints: TrainingCheckpoints | None = None,
    checkpoint_interval: float = 60.0,
    resume: bool = False,
) -> None:
    """Train one stage.

    On a failure the module keeps the last good epoch's weights of a stage that was not
    trained before (the stage stays unfinished), and is restored to its state from before
    the stage otherwise. A ``KeyboardInterrupt`` comes out as one, with the SIGINT handler
    that Lightning replaced put back.
    """
    if stage == "flow":
        prepare_flow_conditioning(model, splitter)
    data = splitter
    if stage == "flow" and model._flow_on_latent_table:
        data = flow_table_split(model, splitter)
    n_steps, n_val = split_sizes(data)
    n_processes = data_parallel_processes(accelerator, devices, trainer_kwargs)
    max_epochs, plan_kwargs, early_stopping, n_steps = stage_schedule(
        stage, n_steps, n_val, max_epochs, plan_kwargs, early_stopping, n_processes
    )
    kwargs = dict(trainer_kwargs)
    kwargs, guard = stage_trainer_kwargs(
        stage,
        kwargs,
        n_steps,
        n_val,
        early_stopping,
        checkpoints,
        checkpoint_interval,
        resume,
    )
    plan_cls = model._autoencoder_plan_cls if stage == "autoencoder" else model._flow_plan_cls
    plan = plan_cls(model.module, **plan_kwargs)

    before = {
        "state": copy.deepcopy(model.module.state_dict()),
        "history": model.history_,
        "stages": list(trained_stages(model)),
    }
    kept = [s for s in before["stages"] if s != stage and stage != "autoencoder"]
    model.trained_stages_, model.is_trained_, model.history_ = kept, False, None
    logger.info("Training the %s (%d epochs at most).", stage, max_epochs)
    sigint = (
        signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        with quiet_lightning(verbose=settings.verbosity <= logging.DEBUG):
            runner = model._train_runner_cls(
                model,
                training_plan=plan,
                data_splitter=data,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                trainer_config=trainer_config,
                **kwargs,
            )
            runner()
    except BaseException as error:
        model.module.load_state_dict(before["state"])
        if stage not in before["stages"]:  # first training of it: keep its progress
            guard.restore(model.module)
        model.trained_stages_ = before["stages"]
        model.is_trained_ = "flow" in before["stages"]
        model.history_ = before["history"]
        model.module.eval()
        if isinstance(error, SystemExit) and guard.interrupted:
            if sigint is not None:
                signal.signal(signal.SIGINT, sigint)
            raise KeyboardInterrupt(
                f"Training of the {stage} was interrupted; the model keeps its finished "
                f"stages {model.trained_stages_ or '(none)'}."
            ) from None
        raise
    trainer = getattr(runner, "trainer", None)
    if trainer is not None:
        model.training_summary_ = {
            **(getattr(model, "training_summary_", None) or {}),
            stage: stage_summary(trainer),
        }
    if is_streamed(splitter):  # the runner recorded rows of the data module or latent table
        model.train_indices = model.validation_indices = model.test_indices = None
    if stage == "autoencoder":
        fit_split_latent_statistics(model, splitter)
        drop_clusters(model)  # derived from the previous autoencoder's latents
    previous = {
        key: frame
        for key, frame in (before["history"] or {}).items()
        if stage == "flow" and not key.endswith("_flow")
    }
    model.history_ = {
        **previous,
        **{f"{name}_{stage}": frame for name, frame in (model.history_ or {}).items()},
    }
    model.trained_stages_ = [*kept, stage]
    model.is_trained_ = "flow" in model.trained_stages_
    model.module.eval()
    if checkpoints is not None:
        checkpoints.finish(stage, model.module)
