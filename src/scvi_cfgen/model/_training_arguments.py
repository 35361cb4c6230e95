"""Reading ``train``'s per-stage arguments (budgets, plan keyword arguments, 0.1 names)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from scvi.train._config import merge_kwargs

from scvi_cfgen.module._cfgen import TRAINING_STAGES
from scvi_cfgen.train._precision import check_flow_precision

_LEGACY_EPOCHS = {"max_epochs_autoencoder": "autoencoder", "max_epochs_flow": "flow"}
_LEGACY_PLANS = {"autoencoder_plan_kwargs": "autoencoder", "flow_plan_kwargs": "flow"}


def per_stage(value, name: str) -> dict[str, object]:
    """``{"autoencoder": ..., "flow": ...}`` from one value for both or a mapping by stage.

    A mapping whose keys are all stage names is read per stage (missing stages get ``None``);
    any other value (including another mapping, e.g. plan keyword arguments) applies to both.
    """
    if isinstance(value, Mapping) and value and set(value) <= set(TRAINING_STAGES):
        return {stage: value.get(stage) for stage in TRAINING_STAGES}
    if isinstance(value, Mapping) and set(value) & set(TRAINING_STAGES):
        raise ValueError(
            f"`{name}` mixes stage names {sorted(set(value) & set(TRAINING_STAGES))} with "
            f"other keys {sorted(set(value) - set(TRAINING_STAGES))}: give either one value for "
            "both stages or a mapping {'autoencoder': ..., 'flow': ...}."
        )
    return dict.fromkeys(TRAINING_STAGES, value)


def check_budget(max_epochs, stage: str) -> int | None:
    """``None`` (the default budget) or a positive integer number of epochs."""
    if max_epochs is None:
        return None
    if isinstance(max_epochs, bool) or int(max_epochs) != max_epochs or max_epochs < 1:
        raise ValueError(
            f"`max_epochs` of the {stage} stage must be a positive integer, got {max_epochs!r} "
            "(0 would leave the stage untrained, -1 would train without end). Leave it out for "
            "the default budget."
        )
    return int(max_epochs)


def legacy_arguments(trainer_kwargs: dict, epochs: dict, plans: dict) -> None:
    """Move scvi-cfgen 0.1's per-stage keywords out of ``trainer_kwargs``, with a warning."""
    for old, stage in _LEGACY_EPOCHS.items():
        if old in trainer_kwargs:
            warnings.warn(
                f"`{old}` is deprecated; use `max_epochs={{'{stage}': n}}`.",
                FutureWarning,
                stacklevel=4,
            )
            epochs[stage] = check_budget(trainer_kwargs.pop(old), stage)
    for old, stage in _LEGACY_PLANS.items():
        if old in trainer_kwargs:
            warnings.warn(
                f"`{old}` is deprecated; use `plan_kwargs={{'{stage}': {{...}}}}`.",
                FutureWarning,
                stacklevel=4,
            )
            plans[stage].update(trainer_kwargs.pop(old) or {})


def stage_settings(max_epochs, plan_config, plan_kwargs, trainer_kwargs):
    """Per-stage epoch budgets and plan keyword arguments from ``train``'s arguments."""
    epochs = {
        stage: check_budget(value, stage)
        for stage, value in per_stage(max_epochs, "max_epochs").items()
    }
    configs = per_stage(plan_config, "plan_config")
    plans = {
        stage: dict(merge_kwargs(configs[stage], kwargs or {}, name="plan"))
        for stage, kwargs in per_stage(plan_kwargs, "plan_kwargs").items()
    }
    legacy_arguments(trainer_kwargs, epochs, plans)
    check_flow_precision(plans["flow"].get("precision", "auto"))  # before the autoencoder trains
    return epochs, plans
