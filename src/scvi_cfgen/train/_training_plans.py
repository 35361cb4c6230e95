"""Lightning training plans for the count autoencoder and the latent flow."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan

from ._ema import ExponentialMovingAverage
from ._precision import FlowPrecision, check_flow_precision, flow_autocast


def _minibatch_size(batch: dict) -> int:
    return next(iter(batch.values())).shape[0]


class _StageTrainingPlan(TrainingPlan):
    """A :class:`~scvi.train.TrainingPlan` that puts the module in one training stage."""

    stage: str

    def training_step(self, batch, batch_idx):
        """Skip a one-cell minibatch (BatchNorm cannot train on it), otherwise train as scvi."""
        if _minibatch_size(batch) < 2:
            return None
        return super().training_step(batch, batch_idx)

    def on_fit_start(self) -> None:
        """Enter this plan's stage (freezes the other half of the module)."""
        self.module.set_training_stage(self.stage)

    def configure_optimizers(self):
        """Optimise the parameters of this stage only."""
        self.module.set_training_stage(self.stage)
        return super().configure_optimizers()


class AutoencoderTrainingPlan(_StageTrainingPlan):
    """Stage 1: the count autoencoder, with the module's negative binomial loss.

    The velocity field is frozen. The networks follow the paper: AdamW, learning rate 1e-3.
    The inverse dispersions get their own parameter group, at ``lr_dispersion`` and without
    weight decay: Adam moves a parameter by about ``lr`` per step, and the log inverse dispersion
    starts at 0 but belongs around 2-4 for most genes, so at 1e-3 it cannot get there in the few
    hundred steps that a data set of a few thousand cells trains for (on PBMC3k it was still
    within 1 +- 0.5 after 680 steps, and the over-dispersed counts were easy to tell from real
    ones). Other keyword arguments go to :class:`scvi.train.TrainingPlan`.
    """

    stage = "autoencoder"

    def __init__(
        self,
        module,
        *,
        optimizer: str = "AdamW",
        lr: float = 1e-3,
        lr_dispersion: float = 1e-2,
        **kwargs,
    ):
        super().__init__(module, optimizer=optimizer, lr=lr, **kwargs)
        if lr_dispersion <= 0:
            raise ValueError(f"`lr_dispersion` must be positive, got {lr_dispersion}.")
        self.lr_dispersion = lr_dispersion

    def on_fit_start(self) -> None:
        """Enter the stage; the encoder will be trained on ``count_split`` of the counts."""
        super().on_fit_start()
        autoencoder = getattr(self.module, "autoencoder", self.module)
        if hasattr(autoencoder, "encoder_input_scale"):
            autoencoder.encoder_input_scale.fill_(autoencoder.count_split or 1.0)

    def forward(self, *args, **kwargs):
        """The module's forward pass, with count splitting when the autoencoder uses it."""
        inference_kwargs = {**(kwargs.pop("inference_kwargs", None) or {}), "split_counts": True}
        return self.module(*args, inference_kwargs=inference_kwargs, **kwargs)

    def configure_optimizers(self):
        """Optimise the networks at ``lr`` and the inverse dispersions at ``lr_dispersion``."""
        config = super().configure_optimizers()
        optimizer = config["optimizer"]
        autoencoder = getattr(self.module, "autoencoder", self.module)
        log_theta = getattr(autoencoder, "log_theta", None)  # absent without an RNA modality
        if (
            log_theta is not None
            and log_theta.requires_grad
            and isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW)
        ):
            group = optimizer.param_groups[0]
            group["params"] = [p for p in group["params"] if p is not log_theta]
            optimizer.add_param_group(
                {"params": [log_theta], "lr": self.lr_dispersion, "weight_decay": 0.0}
            )
        return config


class FlowTrainingPlan(_StageTrainingPlan):
    """Stage 2: conditional flow matching on the frozen encoder's latents.

    The encoder and decoder are frozen and kept in eval mode (see
    :meth:`~scvi_cfgen.module.CFGenModule.set_training_stage`); only the velocity field is
    optimised with AdamW. The paper's learning rate (1e-4) assumes many more optimiser steps than
    a CPU budget allows: on PBMC3k, 2,700 steps at 1e-3 reached a validation loss of 1.34 against
    1.65 at 1e-4. The default is therefore 1e-3, halved whenever the (common-random-number)
    validation loss has not improved for ``lr_patience`` epochs (``CFGenModel.train`` sets it
    to the epochs of 100 optimiser steps).

    With ``ema_decay`` (e.g. ``0.999``), the velocity field's weights are averaged over the
    optimiser steps (an exponential moving average warmed up as ``(1 + n) / (10 + n)`` after ``n``
    steps, so that it spans about the last tenth of the steps taken); validation, learning-rate
    and early-stopping decisions and the weights the stage ends with are then the average's. It is
    off by default (``None``: the last step's weights): on the generalisation suite it did not
    beat them (see the benchmarks page).

    ``precision`` sets the velocity field's arithmetic: ``"bf16-mixed"`` runs its matrix products
    in bfloat16 under :func:`torch.autocast` (weights, optimiser state and loss stay float32),
    ``"32"`` in float32, and ``"auto"`` (the default) uses bfloat16 where the hardware multiplies
    it natively (CUDA devices with bfloat16, CPUs with AVX-512 BF16 or AMX) and float32 elsewhere.
    On such hardware it halves the time of a flow epoch; paired on the same autoencoder, the two
    precisions train the same field up to rounding (see the benchmarks page). Use ``"32"`` to get
    the same weights on machines with and without bfloat16. Other keyword arguments go to
    :class:`scvi.train.TrainingPlan`.
    """

    stage = "flow"

    def __init__(
        self,
        module,
        *,
        optimizer: str = "AdamW",
        lr: float = 1e-3,
        reduce_lr_on_plateau: bool = True,
        lr_patience: int = 8,
        lr_factor: float = 0.5,
        lr_min: float = 1e-5,
        ema_decay: float | None = None,
        precision: FlowPrecision = "auto",
        **kwargs,
    ):
        check_flow_precision(precision)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(
                f"`ema_decay` must be in (0, 1) (e.g. 0.999), or None to keep the last step's "
                f"weights; got {ema_decay}."
            )
        super().__init__(
            module,
            optimizer=optimizer,
            lr=lr,
            reduce_lr_on_plateau=reduce_lr_on_plateau,
            lr_patience=lr_patience,
            lr_factor=lr_factor,
            lr_min=lr_min,
            lr_scheduler_metric=kwargs.pop("lr_scheduler_metric", "flow_matching_loss_validation"),
            **kwargs,
        )
        self.ema_decay = ema_decay
        self.precision = precision
        self.ema: ExponentialMovingAverage | None = None
        self._saved_ema: dict | None = None

    def on_fit_start(self) -> None:
        """Enter the flow stage and start the weight average (from a checkpoint's, if resumed)."""
        super().on_fit_start()
        if self.ema_decay is None:
            return
        self.ema = ExponentialMovingAverage(list(self.module.flow.parameters()), self.ema_decay)
        if self._saved_ema is not None:
            self.ema.load_state_dict(self._saved_ema)
            self._saved_ema = None

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Update the weight average after each optimiser step."""
        if self.ema is not None and outputs is not None:
            self.ema.update()

    def on_validation_epoch_start(self) -> None:
        """Validate the averaged weights."""
        if self.ema is not None:
            self.ema.swap()

    def on_validation_epoch_end(self) -> None:
        """Put the current weights back for training."""
        if self.ema is not None:
            self.ema.swap()

    def on_train_end(self) -> None:
        """End the stage with the averaged weights."""
        if self.ema is not None:
            self.ema.copy_to_parameters()
            self.ema = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the weight average in Lightning checkpoints."""
        if self.ema is not None:
            checkpoint["flow_weight_average"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the weight average when a checkpointed stage resumes."""
        self._saved_ema = checkpoint.get("flow_weight_average")

    def forward(self, tensors, loss_kwargs=None, **kwargs):
        """Flow matching loss in scvi's ``(inference, generative, loss)`` output format."""
        return {}, {}, self.module.flow_loss(tensors)

    def _log_flow_loss(self, loss: torch.Tensor, split: str, n_cells: int) -> None:
        for name in (f"{split}_loss", f"flow_matching_loss_{split}"):
            self.log(
                name,
                loss,
                on_step=False,
                on_epoch=True,
                prog_bar=name == f"{split}_loss",
                batch_size=n_cells,
                sync_dist=self.use_sync_dist,
            )

    def training_step(self, batch, batch_idx):
        """One optimiser step on the flow matching loss (logged without ELBO names)."""
        n_cells = _minibatch_size(batch)
        if n_cells < 2:
            return None
        with flow_autocast(self.precision, self.device):
            loss = self.module.flow_loss(batch).loss.float()
        self._log_flow_loss(loss, "train", n_cells)
        return loss

    def validation_step(self, batch, batch_idx):
        """Flow matching loss of validation cells, with common random numbers."""
        with flow_autocast(self.precision, self.device):
            loss = self.module.flow_loss(batch).loss.float()
        self._log_flow_loss(loss, "validation", _minibatch_size(batch))

    def on_train_epoch_end(self) -> None:
        """Log the learning rate (it is reduced on plateaus)."""
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            self.log("lr", optimizer.param_groups[0]["lr"], on_epoch=True, on_step=False)
