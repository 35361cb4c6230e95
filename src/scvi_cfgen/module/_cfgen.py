"""The CFGen module: a count autoencoder and a latent flow, composed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from scvi_cfgen._constants import (
    ATAC_X_KEY,
    CAT_COVS_KEY,
    LATENT_KEY,
    LOG_LIBRARY_KEY,
    SEED_TOTAL_KEY,
    X_KEY,
)

from ._autoencoder import CountAutoencoder, LatentSpace, binarize, minibatch_generator
from ._data_statistics import DataStatistics, SizeFactorLaw
from ._flow import Coupling, LatentFlow
from ._guidance import ConditioningScheme, GuidedVelocity
from ._realism import RealismScorer

TrainingStage = Literal["autoencoder", "flow"]
TRAINING_STAGES: tuple[str, ...] = ("autoencoder", "flow")

__all__ = ["CFGenModule", "TrainingStage", "binarize"]

# State-dict prefixes of the single-class module of scvi-cfgen 0.1.0 and where they live now.
_LEGACY_PREFIXES = {
    "encoder.": "autoencoder.encoder.",
    "decoder.": "autoencoder.decoder.",
    "decoder_atac.": "autoencoder.decoder_atac.",
    "log_theta": "autoencoder.log_theta",
    "velocity_field.": "flow.velocity_field.",
}


class CFGenModule(BaseModuleClass):
    """A :class:`CountAutoencoder` and a :class:`LatentFlow` on its standardised latents.

    The scvi-tools interface (``inference`` / ``generative`` / ``loss``) is the autoencoder's, so
    scvi-tools' :class:`~scvi.train.TrainingPlan` trains it. The flow stage is trained through
    :meth:`flow_loss` (see :class:`~scvi_cfgen.train.FlowTrainingPlan`), which encodes a
    minibatch with the frozen encoder and hands the latents, codes and size factors to the flow.
    Statistics learned from the training cells (attribute frequencies, size-factor laws, latent
    standardisation) live in :class:`DataStatistics` buffers, so ``save``/``load`` restore them.

    Parameters
    ----------
    n_input
        Number of genes (0 for an ATAC-only model).
    n_categories_per_attribute
        Number of categories of each conditioning attribute.
    n_latent
        Latent dimension.
    n_hidden
        Encoder hidden sizes (the decoder mirrors them).
    dropout_rate
        Dropout probability after each hidden layer of the encoder.
    dispersion_attribute_index
        Index of the attribute whose categories get their own inverse dispersion per gene;
        ``None`` for one inverse dispersion per gene.
    size_factor_attribute_index
        Index of the attribute whose categories get their own size-factor law; ``None`` for
        one global law.
    condition_on_size_factor
        Whether the flow is also conditioned on the scaled log size factor.
    size_factor_law
        ``"lognormal"`` (the paper's), ``"truncated_lognormal"`` or ``"empirical"``: see
        :class:`DataStatistics`.
    flow_hidden_dim, flow_n_blocks, flow_condition_dim
        Velocity network width, depth and conditioning embedding size.
    p_uncond
        Per-cell probability of training on the unconditional (null) condition.
    conditioning_scheme
        ``"single"`` (one attribute per cell, the paper's scheme) or ``"single_and_joint"``.
    sigma_min
        Width of the linear Gaussian path at ``t = 1``.
    coupling
        ``"independent"`` noise-data pairs or minibatch exact ``"ot"`` pairs, solved within each
        combination of conditions.
    n_input_atac
        Number of ATAC peaks (0: no ATAC modality).
    n_hidden_atac
        ATAC encoder hidden sizes (the ATAC decoder mirrors them; paper ``(1024, 512)``).
    rna_weight, atac_weight
        Weights of the RNA and ATAC reconstruction losses in the autoencoder loss.
    count_split
        Fraction of the RNA counts the encoder sees in training (binomial count splitting;
        ``None``: all, the paper's autoencoder). See :class:`CountAutoencoder`.
    latent_space
        ``"bottleneck"`` (CFGen) or ``"genes"`` (cellFlow: the latent is the gene logits of
        the NB mean, ``n_latent`` is ignored). See :class:`CountAutoencoder`.
    """

    def __init__(
        self,
        n_input: int,
        n_categories_per_attribute: Sequence[int],
        n_latent: int = 50,
        n_hidden: Sequence[int] = (512, 256),
        dropout_rate: float = 0.0,
        dispersion_attribute_index: int | None = None,
        size_factor_attribute_index: int | None = None,
        condition_on_size_factor: bool = False,
        size_factor_law: SizeFactorLaw = "lognormal",
        flow_hidden_dim: int = 512,
        flow_n_blocks: int = 3,
        flow_condition_dim: int = 128,
        p_uncond: float = 0.2,
        conditioning_scheme: ConditioningScheme = "single",
        sigma_min: float = 1e-4,
        coupling: Coupling = "independent",
        n_input_atac: int = 0,
        n_hidden_atac: Sequence[int] = (1024, 512),
        rna_weight: float = 1.0,
        atac_weight: float = 1.0,
        count_split: float | None = None,
        latent_space: LatentSpace = "bottleneck",
    ):
        super().__init__()
        n_categories = [int(n) for n in n_categories_per_attribute]
        if dispersion_attribute_index is not None and not 0 <= dispersion_attribute_index < len(
            n_categories
        ):
            raise ValueError(
                f"`dispersion_attribute_index`={dispersion_attribute_index} is not the index of "
                f"one of the {len(n_categories)} attributes."
            )
        self.autoencoder = CountAutoencoder(
            n_input,
            n_latent,
            n_hidden,
            n_dispersion_categories=(
                1
                if dispersion_attribute_index is None
                else n_categories[dispersion_attribute_index]
            ),
            dispersion_attribute_index=dispersion_attribute_index,
            n_input_atac=n_input_atac,
            n_hidden_atac=n_hidden_atac,
            rna_weight=rna_weight,
            atac_weight=atac_weight,
            count_split=count_split,
            latent_space=latent_space,
            dropout_rate=dropout_rate,
        )
        self._flow_settings = {
            "hidden_dim": flow_hidden_dim,
            "n_blocks": flow_n_blocks,
            "condition_dim": flow_condition_dim,
            "condition_on_size_factor": condition_on_size_factor,
            "p_uncond": p_uncond,
            "conditioning_scheme": conditioning_scheme,
            "sigma_min": sigma_min,
            "coupling": coupling,
        }
        self.size_factor_law = size_factor_law
        self.build_conditioning(n_categories, size_factor_attribute_index)
        self._stage: TrainingStage = "autoencoder"

    def build_conditioning(
        self,
        n_categories_per_attribute: Sequence[int],
        size_factor_attribute_index: int | None = None,
    ) -> None:
        """(Re)build the parts sized by the attributes: the flow, the statistics, the scorer.

        Called at construction, and again when the attributes change after the autoencoder is
        trained (clusters derived from its latents): the flow and the realism scorer start
        untrained, the attribute frequencies and size-factor laws must be refitted, and the
        latent standardisation is kept. The autoencoder is untouched.

        Parameters
        ----------
        n_categories_per_attribute
            Number of categories of each conditioning attribute.
        size_factor_attribute_index
            Index of the attribute whose categories get their own size-factor law; ``None``
            for one global law.
        """
        n_categories = [int(n) for n in n_categories_per_attribute]
        if size_factor_attribute_index is not None and not (
            0 <= size_factor_attribute_index < len(n_categories)
        ):
            raise ValueError(
                f"`size_factor_attribute_index`={size_factor_attribute_index} is not the index "
                f"of one of the {len(n_categories)} attributes."
            )
        n_latent = self.autoencoder.n_latent
        previous = getattr(self, "statistics", None)
        self.n_categories_per_attribute = n_categories
        self.size_factor_attribute_index = size_factor_attribute_index
        self.flow = LatentFlow(n_latent, n_categories, **self._flow_settings)
        n_size = (
            1 if size_factor_attribute_index is None else n_categories[size_factor_attribute_index]
        )
        self.statistics = DataStatistics(len(n_categories), n_size, n_latent, self.size_factor_law)
        if previous is not None:
            self.statistics.fit_latent(previous.latent_mean, previous.latent_std)
        self.realism = RealismScorer(n_latent, n_categories)
        device = next(self.autoencoder.parameters()).device
        for part in (self.flow, self.statistics, self.realism):
            part.to(device).train(self.training)

    # ------------------------------------------------------------------ description
    @property
    def n_latent(self) -> int:
        """Latent dimension."""
        return self.autoencoder.n_latent

    @property
    def n_input(self) -> int:
        """Number of genes (0 without RNA)."""
        return self.autoencoder.n_input

    @property
    def n_input_atac(self) -> int:
        """Number of peaks (0 without ATAC)."""
        return self.autoencoder.n_input_atac

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality roles of the autoencoder, e.g. ``("rna", "atac")``."""
        return self.autoencoder.modalities

    @property
    def has_rna(self) -> bool:
        """Whether the model has an RNA (negative binomial) modality."""
        return self.autoencoder.has_rna

    @property
    def has_atac(self) -> bool:
        """Whether the model has an ATAC (Bernoulli) modality."""
        return self.autoencoder.has_atac

    @property
    def dispersion_attribute_index(self) -> int | None:
        """Attribute whose categories have their own dispersions (``None``: per gene)."""
        return self.autoencoder.dispersion_attribute_index

    def on_load(self, model, **kwargs):
        """scvi-tools' load hook: size the conditioning for the saved attributes.

        Runs after the saved attributes are set on the model and before the state dict is
        loaded, so a model conditioned on clusters (whose number is only known after training)
        gets flow embeddings of the saved shapes.
        """
        n_categories, size_index = model._conditioning_sizes()
        if (n_categories, size_index) != (
            self.n_categories_per_attribute,
            self.size_factor_attribute_index,
        ):
            self.build_conditioning(n_categories, size_index)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        scale_key = prefix + "autoencoder.encoder_input_scale"
        if scale_key not in state_dict:  # saved before count splitting: encoder saw all counts
            state_dict[scale_key] = torch.tensor(1.0)
        for key, value in self.realism.state_dict(prefix=prefix + "realism.").items():
            state_dict.setdefault(key, value)  # saved before the realism filter: untrained
        for key in [k for k in state_dict if k.startswith(prefix)]:
            local = key[len(prefix) :]
            for old, new in _LEGACY_PREFIXES.items():
                if local.startswith(old):
                    state_dict[prefix + new + local[len(old) :]] = state_dict.pop(key)
                    break
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ training stages
    def set_training_stage(self, stage: TrainingStage) -> None:
        """Choose which half trains: the autoencoder, or the flow on a frozen autoencoder.

        In the flow stage the autoencoder's parameters are frozen *and* its BatchNorm layers stay
        in eval mode whatever ``train()`` is called with, so latents never drift.
        """
        if stage not in TRAINING_STAGES:
            raise ValueError(f"Unknown training stage {stage!r}; use one of {TRAINING_STAGES}.")
        self._stage = stage
        self.autoencoder.requires_grad_(stage == "autoencoder")
        self.flow.requires_grad_(stage == "flow")
        self.realism.requires_grad_(False)  # trained apart, after the flow
        self.train(self.training)

    def train(self, mode: bool = True):
        """Set training mode; the autoencoder stays in eval mode during the flow stage."""
        super().train(mode)
        if getattr(self, "_stage", "autoencoder") == "flow":
            self.autoencoder.eval()
        return self

    # ------------------------------------------------------------------ autoencoder interface
    def _get_inference_input(self, tensors, **kwargs):
        return self.autoencoder._get_inference_input(tensors, **kwargs)

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return self.autoencoder._get_generative_input(tensors, inference_outputs, **kwargs)

    def inference(self, *args, **kwargs):
        """The autoencoder's :meth:`~CountAutoencoder.inference`."""
        return self.autoencoder.inference(*args, **kwargs)

    def generative(self, *args, **kwargs):
        """The autoencoder's :meth:`~CountAutoencoder.generative`."""
        return self.autoencoder.generative(*args, **kwargs)

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """The autoencoder's reconstruction loss."""
        return self.autoencoder.loss(tensors, inference_outputs, generative_outputs)

    def sample(self, tensors, n_samples: int = 1, generative_kwargs: dict | None = None):
        """Counts drawn from the reconstruction of observed cells (scVI's posterior predictive)."""
        return self.autoencoder.sample(tensors, n_samples, generative_kwargs)

    def encode(self, x=None, x_atac=None) -> torch.Tensor:
        """Deterministic latent of RNA counts and/or ATAC peaks, in encoder units."""
        return self.autoencoder.encode(x, x_atac)

    def dispersion_codes(self, cat_covs: torch.Tensor | None) -> torch.Tensor | None:
        """Codes of the dispersion attribute, or ``None`` for per-gene dispersion."""
        return self.autoencoder.dispersion_codes(cat_covs)

    def sample_modalities(self, z, library, dispersion_codes) -> dict[str, torch.Tensor]:
        """Draw every modality for latents ``z`` (encoder units)."""
        return self.autoencoder.sample_modalities(z, library, dispersion_codes)

    # ------------------------------------------------------------------ flow interface
    @torch.no_grad()
    def encode_standardized(self, x=None, x_atac=None) -> torch.Tensor:
        """Encoder latents standardised with the training latents' mean and std."""
        return self.standardize_latent(self.encode(x, x_atac))

    def flow_loss(self, tensors) -> LossOutput:
        """Conditional flow matching loss on frozen, standardised latents of a minibatch.

        ``tensors`` hold either a minibatch of the latent table (``"latent"``: standardised
        latents, ``"log_library"``, ``"seed_total"``; what :meth:`CFGenModel.train
        <scvi_cfgen.CFGenModel.train>` uses, each cell encoded once) or counts, which are then
        encoded here with the frozen encoder.

        In eval mode (validation) the noise, times and condition dropout are drawn from a
        generator seeded by the minibatch's content, so every validation pass sees the same
        draws for the same cells: epoch-to-epoch changes of the validation loss then reflect the
        model, not the sampling noise, and early stopping can trust them.
        """
        if LATENT_KEY in tensors:
            z1 = tensors[LATENT_KEY]
            log_library = tensors[LOG_LIBRARY_KEY].reshape(-1)
            seed_source = tensors[SEED_TOTAL_KEY]
        else:
            x, x_atac = tensors.get(X_KEY), tensors.get(ATAC_X_KEY)
            z1 = self.encode_standardized(x, x_atac)
            log_library = torch.log(x.sum(dim=1)) if self.has_rna else None
            seed_source = x if self.has_rna else x_atac
        generator = None if self.training else minibatch_generator(seed_source)
        codes = tensors[CAT_COVS_KEY].long() if CAT_COVS_KEY in tensors else None
        if codes is None:
            codes = torch.zeros(z1.shape[0], 0, dtype=torch.long, device=z1.device)
        size = self.size_factor_condition(log_library) if self.has_rna else None
        per_cell = self.flow.loss(z1, codes, size, generator)
        return LossOutput(loss=per_cell.mean(), n_obs_minibatch=per_cell.shape[0])

    def size_factor_condition(self, log_library: torch.Tensor) -> torch.Tensor | None:
        """The flow's size-factor input (scaled log library), or ``None`` if it has none."""
        if not self.flow.condition_on_size_factor:
            return None
        return self.statistics.scale_log_library(log_library)

    def guided_field(self, codes, weights, scaled_log_size_factor=None) -> GuidedVelocity:
        """The guided velocity ``v(t, z)`` for fixed per-cell codes and weights (for solvers)."""
        return self.flow.guided(codes, weights, scaled_log_size_factor)

    def integrate_latent(self, z, codes, weights, scaled_log_size_factor=None, t_start=0.0,
                         t_end=1.0, **solver_kwargs) -> torch.Tensor:  # fmt: skip
        """Integrate the guided field in standardised latent units (``1 -> 0`` inverts)."""
        return self.flow.integrate(
            z, codes, weights, scaled_log_size_factor, t_start, t_end, **solver_kwargs
        )

    def standardize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder units to the flow's standardised units."""
        return (z - self.statistics.latent_mean) / self.statistics.latent_std

    def unstandardize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The flow's standardised units to encoder units."""
        return z * self.statistics.latent_std + self.statistics.latent_mean

    @torch.inference_mode()
    def sample_latent(self, noise, codes, weights, scaled_log_size_factor=None, **solver_kwargs):
        """Integrate the guided field from noise (t=0) to latents (t=1), in encoder units."""
        z = self.integrate_latent(noise, codes, weights, scaled_log_size_factor, **solver_kwargs)
        return self.unstandardize_latent(z)
