"""Training CFGen's two stages with scvi-tools' ``train`` signature and machinery."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

from scvi.dataloaders import DataSplitter
from scvi.train import TrainRunner

from scvi_cfgen.module._cfgen import TRAINING_STAGES
from scvi_cfgen.train import AutoencoderTrainingPlan, FlowTrainingPlan

from ._checkpoints import TrainingCheckpoints
from ._clusters import cluster_snapshot, restore_clusters
from ._flow_conditioning import drop_clusters_of_other_cells
from ._model_state import trained_stages
from ._stage_run import adopt_finished_stage, run_stage
from ._training_arguments import stage_settings
from ._training_split import (
    fit_split_data_statistics,
    previous_split,
    training_split,
)


class TrainingMixin:
    """Adds :meth:`train`, :meth:`train_autoencoder` and :meth:`train_flow` to the model."""

    _data_splitter_cls = DataSplitter
    _autoencoder_plan_cls = AutoencoderTrainingPlan
    _flow_plan_cls = FlowTrainingPlan
    _train_runner_cls = TrainRunner
    #: Train the flow on a table of latents encoded once (``False``: re-encode every minibatch).
    _flow_on_latent_table = True

    def train(
        self,
        max_epochs: int | Mapping[str, int] | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        load_sparse_tensor: bool = False,
        batch_size: int = 256,
        early_stopping: bool = True,
        datasplitter_kwargs: dict | None = None,
        plan_config: Mapping | None = None,
        plan_kwargs: Mapping | None = None,
        datamodule=None,
        trainer_config: Mapping | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        checkpoint_interval: float = 60.0,
        **trainer_kwargs,
    ) -> None:
        """Train the count autoencoder, then the latent flow on the frozen encoder.

        The signature is scvi-tools' (:meth:`scvi.model.base.UnsupervisedTrainingMixin.train`).
        Both stages run through :class:`~scvi.train.TrainRunner` on one train/validation split,
        so ``accelerator``, ``devices`` and Lightning strategies work as for any scvi-tools
        model. Size-factor laws and attribute frequencies come from the training cells only.
        To train one stage, use :meth:`train_autoencoder` or :meth:`train_flow`.

        A stage that fails or is interrupted leaves the model as it was before that stage:
        stages that finished stay trained (:attr:`trained_stages`), with their history, and a
        failed re-training of a fully trained model restores that model.

        Parameters
        ----------
        max_epochs
            Epochs per stage: one number for both, or ``{"autoencoder": n, "flow": m}``.
            Default: enough epochs for 20,000 optimiser steps per stage, whatever the number of
            cells or of DDP processes (each trains on its share of the cells, so steps are
            counted per process); early stopping usually ends both sooner.
        accelerator, devices
            Passed to Lightning (``"auto"`` uses a GPU when there is one). For several devices
            pass a DDP strategy in ``trainer_kwargs``, as for scvi-tools models:
            ``strategy="ddp_find_unused_parameters_true"`` in a script,
            ``"ddp_spawn_find_unused_parameters_true"`` or ``"ddp_notebook..."`` interactively
            (the frozen half of the module has parameters without gradients). Data statistics
            and the flow's latent table are computed before training starts (with
            ``ddp_spawn``, once, in the calling process).
        train_size, validation_size
            Fractions of cells for training and validation. ``None`` (the default): 10 % of the
            cells for validation, raised towards 200 cells (at most 20 %) on small data, where a
            loss over a few dozen cells is too noisy for early stopping; from 2,000 cells on this
            is scvi's split, which also moves a last minibatch of 1-2 cells to validation.
        shuffle_set_split
            Whether the split is random (otherwise sequential).
        load_sparse_tensor
            Load sparse minibatches as sparse tensors (scvi-tools, experimental).
        batch_size
            Minibatch size of both stages (paper: 256).
        early_stopping
            Stop each stage when its validation loss has not improved for
            ``early_stopping_patience`` epochs (a trainer keyword; default: the epochs of 200
            optimiser steps, at least 2). The flow's learning rate is halved after 100 steps
            without improvement (``plan_kwargs={"flow": {"lr_patience": epochs}}``).
        datasplitter_kwargs
            Keyword arguments of :class:`~scvi.dataloaders.DataSplitter`.
        plan_config, plan_kwargs
            Keyword arguments of the training plans
            (:class:`~scvi_cfgen.train.AutoencoderTrainingPlan`,
            :class:`~scvi_cfgen.train.FlowTrainingPlan`): one mapping for both stages, e.g.
            ``{"lr": 1e-3}``, or one per stage, ``{"autoencoder": {...}, "flow": {...}}``.
            ``plan_kwargs`` takes precedence over ``plan_config``.
        datamodule
            A scvi-tools data module to train from instead of the registered AnnData, e.g.
            :class:`scvi.dataloaders.TileDBDataModule` over a TileDB-SOMA experiment, for a
            model built on :meth:`registry_from_datamodule` (or ``datamodule.registry``).
            Its own split and minibatch size are used (``train_size``, ``validation_size`` and
            ``batch_size`` go to modules with ``set_split``/``set_batch_size`` only). The
            statistics, latent moments and the flow's latent table are computed by streaming
            its loaders; see the scale page.
        trainer_config
            Configuration of :class:`~scvi.train.Trainer`; ``trainer_kwargs`` take precedence.
        checkpoint_dir
            Directory for checkpoints that survive a crash or an interruption: the split, each
            finished stage's weights, and the running stage's Lightning checkpoint (weights,
            optimiser, schedules, epoch), written at the end of an epoch at most every
            ``checkpoint_interval`` seconds. Must be empty unless ``resume``.
        resume
            Continue the run recorded in ``checkpoint_dir`` (e.g. in a new process, on a new
            model built on the same registered data): same split, finished stages loaded, the
            interrupted stage resumed from its last checkpoint. The history then holds the
            epochs run after resuming.
        checkpoint_interval
            Seconds between checkpoints of a running stage (``0``: every epoch).
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer` for both stages (e.g.
            ``early_stopping_patience``, ``enable_progress_bar``, ``callbacks``). The names of
            scvi-cfgen 0.1 (``max_epochs_autoencoder``, ``max_epochs_flow``,
            ``autoencoder_plan_kwargs``, ``flow_plan_kwargs``) still work and warn.

        Notes
        -----
        Each stage shows one progress bar named after it, which ends with the reason the stage
        stopped (early stopping at step N, or the budget); the same facts are kept in
        ``model.training_summary_``. A NaN or infinite training loss stops the stage with a
        :class:`~scvi_cfgen.train.NonFiniteLossError` (a ``ValueError``) naming the stage,
        epoch and likely cause; the module keeps its last good epoch's weights. Lightning's
        banners and internal warnings are silenced unless ``scvi.settings.verbosity`` is
        ``logging.DEBUG``.

        Examples
        --------
        >>> model.train()  # both stages, default budgets
        >>> model.train(max_epochs={"autoencoder": 100, "flow": 400}, plan_kwargs={"lr": 1e-3})
        >>> model.train(checkpoint_dir="ckpt")  # interrupted? in a new session:
        >>> model.train(checkpoint_dir="ckpt", resume=True)
        """
        epochs, plans = stage_settings(max_epochs, plan_config, plan_kwargs, trainer_kwargs)
        if datamodule is not None and (checkpoint_dir is not None or resume):
            raise ValueError(
                "`checkpoint_dir`/`resume` record the split of a registered AnnData; they do not "
                "work with a `datamodule` (its split is the data module's own)."
            )
        checkpoints = None if checkpoint_dir is None else TrainingCheckpoints(checkpoint_dir)
        if resume and checkpoints is None:
            raise ValueError("`resume=True` needs the `checkpoint_dir` of the run to resume.")
        if checkpoint_interval < 0:
            raise ValueError(f"`checkpoint_interval` must be >= 0, got {checkpoint_interval}.")
        if resume:
            recorded = checkpoints.read_split(self.adata.n_obs, self.gene_names)
            datasplitter_kwargs = {**(datasplitter_kwargs or {}), "external_indexing": recorded}
        elif checkpoints is not None:
            checkpoints.start()
        splitter = training_split(
            self,
            train_size,
            validation_size,
            shuffle_set_split,
            load_sparse_tensor,
            batch_size,
            datasplitter_kwargs,
            datamodule,
            trainer_kwargs,
        )
        if checkpoints is not None and not resume:
            checkpoints.write_split(splitter, self.adata.n_obs, self.gene_names)
        previous = None
        if "flow" in trained_stages(self):  # a working model: keep it if re-training fails
            previous = (
                copy.deepcopy(self.module.state_dict()),
                self.history_,
                cluster_snapshot(self),
            )
        drop_clusters_of_other_cells(self)
        fit_split_data_statistics(self, splitter)
        try:
            for stage in TRAINING_STAGES:
                finished = checkpoints.finished_state(stage) if resume else None
                if finished is not None:
                    adopt_finished_stage(self, stage, finished, splitter)
                    continue
                self._run_stage(
                    stage,
                    splitter,
                    epochs[stage],
                    plans[stage],
                    accelerator,
                    devices,
                    early_stopping,
                    trainer_config,
                    trainer_kwargs,
                    checkpoints=checkpoints,
                    checkpoint_interval=checkpoint_interval,
                    resume=resume,
                )
        except BaseException:
            if previous is not None:
                restore_clusters(self, previous[2])
                self.module.load_state_dict(previous[0])
                self.history_, self.trained_stages_, self.is_trained_ = (
                    previous[1],
                    [*TRAINING_STAGES],
                    True,
                )
                self.module.eval()
            raise

    def train_autoencoder(
        self,
        max_epochs: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        load_sparse_tensor: bool = False,
        batch_size: int = 256,
        early_stopping: bool = True,
        datasplitter_kwargs: dict | None = None,
        plan_config: Mapping | None = None,
        plan_kwargs: Mapping | None = None,
        datamodule=None,
        trainer_config: Mapping | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train only the count autoencoder (stage 1); arguments as in :meth:`train`.

        A new train/validation split is drawn and the data statistics are refitted on its
        training cells. A flow trained before no longer matches the new latents, so the model
        then needs :meth:`train_flow` before it can generate.
        """
        epochs, plans = stage_settings(max_epochs, plan_config, plan_kwargs, trainer_kwargs)
        splitter = training_split(
            self,
            train_size,
            validation_size,
            shuffle_set_split,
            load_sparse_tensor,
            batch_size,
            datasplitter_kwargs,
            datamodule,
            trainer_kwargs,
        )
        drop_clusters_of_other_cells(self)
        fit_split_data_statistics(self, splitter)
        self._run_stage(
            "autoencoder",
            splitter,
            epochs["autoencoder"],
            plans["autoencoder"],
            accelerator,
            devices,
            early_stopping,
            trainer_config,
            trainer_kwargs,
        )

    def train_flow(
        self,
        max_epochs: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        load_sparse_tensor: bool = False,
        batch_size: int = 256,
        early_stopping: bool = True,
        datasplitter_kwargs: dict | None = None,
        plan_config: Mapping | None = None,
        plan_kwargs: Mapping | None = None,
        datamodule=None,
        trainer_config: Mapping | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train (or re-train) only the latent flow on the trained, frozen autoencoder.

        Arguments as in :meth:`train`. The flow reuses the autoencoder's train/validation split
        when this session trained it on the same data (``train_size`` and ``validation_size``
        are then ignored); otherwise, e.g. after :meth:`load`, a new split is drawn. Useful to
        try another flow budget, learning rate or coupling on a fixed autoencoder (the flow's
        weights start from where they are).
        """
        if "autoencoder" not in trained_stages(self):
            raise ValueError(
                "The autoencoder is not trained yet: call `train()` (both stages) or "
                "`train_autoencoder()` before `train_flow()`."
            )
        epochs, plans = stage_settings(max_epochs, plan_config, plan_kwargs, trainer_kwargs)
        external = previous_split(self)
        splitter = training_split(
            self,
            None if external else train_size,
            None if external else validation_size,
            shuffle_set_split,
            load_sparse_tensor,
            batch_size,
            {
                **(datasplitter_kwargs or {}),
                **({"external_indexing": external} if external else {}),
            },
            datamodule,
            trainer_kwargs,
        )
        self._run_stage(
            "flow",
            splitter,
            epochs["flow"],
            plans["flow"],
            accelerator,
            devices,
            early_stopping,
            trainer_config,
            trainer_kwargs,
        )

    def _run_stage(self, *args, **kwargs) -> None:
        """Train one stage: ``run_stage`` of ``_stage_run``, kept as a method to be patched."""
        run_stage(self, *args, **kwargs)
