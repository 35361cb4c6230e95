"""The CFGen module: count autoencoder + latent flow, with scvi-tools' module interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from scvi_cfgen._constants import ATAC, ATAC_X_KEY, CAT_COVS_KEY, RNA, X_KEY

from ._data_statistics import DataStatistics
from ._guidance import ConditioningScheme, drop_conditions, guided_velocity
from ._networks import CountDecoder, CountEncoder, FusedEncoder
from ._paths import LinearGaussianPath, ot_pair_noise
from ._solvers import SolverBackend, SolverMethod, integrate
from ._velocity import ResNetVelocityField

Coupling = Literal["independent", "ot"]
TrainingStage = Literal["autoencoder", "flow"]


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Peak counts to 0/1 accessibility (any count above zero is accessible), as floats."""
    return (x > 0).to(torch.float32)


class CFGenModule(BaseModuleClass):
    """Count autoencoder with a negative binomial likelihood and a conditional latent flow.

    With ATAC peaks (``n_input_atac > 0``) the autoencoder is multimodal (paper section 4.2):
    one encoder body per modality, concatenated and mapped by one linear layer to the shared
    latent; a negative binomial decoder over genes and a Bernoulli decoder (on logits) over
    binarised peaks; the two negative log-likelihoods are summed with ``rna_weight`` and
    ``atac_weight``. ``n_input=0`` gives an ATAC-only model (no library size, no dispersion).

    The scvi-tools interface (``inference`` / ``generative`` / ``loss``) is the autoencoder, so
    scvi-tools' :class:`~scvi.train.TrainingPlan` trains it and scvi's RNA mixins
    (``get_normalized_expression``, ``posterior_predictive_sample``) work on it. The flow stage is
    trained through :meth:`flow_loss` (see :class:`~scvi_cfgen.train.FlowTrainingPlan`).

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
    dispersion_attribute_index
        Index of the attribute whose categories get their own inverse dispersion per gene;
        ``None`` for one inverse dispersion per gene.
    size_factor_attribute_index
        Index of the attribute whose categories get their own log-normal size-factor law;
        ``None`` for one global law.
    condition_on_size_factor
        Whether the flow is also conditioned on the scaled log size factor.
    flow_hidden_dim, flow_n_blocks, flow_condition_dim
        Velocity network width, depth and conditioning embedding size.
    p_uncond
        Per-cell probability of training on the unconditional (null) condition.
    conditioning_scheme
        ``"single"`` (one attribute per cell, the paper's scheme) or ``"single_and_joint"``.
    sigma_min
        Width of the linear Gaussian path at ``t = 1``.
    coupling
        ``"independent"`` noise-data pairs or minibatch exact ``"ot"`` pairs.
    n_input_atac
        Number of ATAC peaks (0: no ATAC modality).
    n_hidden_atac
        ATAC encoder hidden sizes (the ATAC decoder mirrors them; paper ``(1024, 512)``).
    rna_weight, atac_weight
        Weights of the RNA and ATAC reconstruction losses in the autoencoder loss.
    """

    def __init__(
        self,
        n_input: int,
        n_categories_per_attribute: Sequence[int],
        n_latent: int = 50,
        n_hidden: Sequence[int] = (512, 256),
        dispersion_attribute_index: int | None = None,
        size_factor_attribute_index: int | None = None,
        condition_on_size_factor: bool = False,
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
    ):
        super().__init__()
        if n_input <= 0 and n_input_atac <= 0:
            raise ValueError("CFGenModule needs genes (`n_input`) or peaks (`n_input_atac`).")
        self.n_input = n_input
        self.n_input_atac = n_input_atac
        self.rna_weight = float(rna_weight)
        self.atac_weight = float(atac_weight)
        self.n_latent = n_latent
        self.n_categories_per_attribute = [int(n) for n in n_categories_per_attribute]
        self.dispersion_attribute_index = dispersion_attribute_index
        self.size_factor_attribute_index = size_factor_attribute_index
        self.condition_on_size_factor = condition_on_size_factor
        self.p_uncond = p_uncond
        self.conditioning_scheme = conditioning_scheme
        self.coupling = coupling
        self.path = LinearGaussianPath(sigma_min)

        n_inputs = {RNA: n_input, ATAC: n_input_atac}
        hidden = {RNA: tuple(n_hidden), ATAC: tuple(n_hidden_atac)}
        self.modalities: tuple[str, ...] = tuple(name for name in n_inputs if n_inputs[name] > 0)
        if len(self.modalities) == 1:  # RNA-only: the same layers (and state dict) as ever
            (name,) = self.modalities
            self.encoder = CountEncoder(n_inputs[name], n_latent, hidden[name])
        else:
            self.encoder = FusedEncoder(n_inputs, n_latent, hidden)
        if self.has_rna:
            self.decoder = CountDecoder(n_latent, n_input, n_hidden)
            n_dispersion = (
                1
                if dispersion_attribute_index is None
                else self.n_categories_per_attribute[dispersion_attribute_index]
            )
            self.log_theta = torch.nn.Parameter(torch.zeros(n_dispersion, n_input))
        if self.has_atac:
            self.decoder_atac = CountDecoder(n_latent, n_input_atac, n_hidden_atac)
        n_size = (
            1
            if size_factor_attribute_index is None
            else self.n_categories_per_attribute[size_factor_attribute_index]
        )
        self.statistics = DataStatistics(len(self.n_categories_per_attribute), n_size, n_latent)
        self.velocity_field = ResNetVelocityField(
            n_latent,
            self.n_categories_per_attribute,
            hidden_dim=flow_hidden_dim,
            n_blocks=flow_n_blocks,
            condition_dim=flow_condition_dim,
            condition_on_size_factor=condition_on_size_factor,
        )
        self.register_buffer(
            "null_codes", torch.tensor(self.n_categories_per_attribute, dtype=torch.long), False
        )
        self._stage: TrainingStage = "autoencoder"

    @property
    def has_rna(self) -> bool:
        """Whether the model has an RNA (negative binomial) modality."""
        return RNA in self.modalities

    @property
    def has_atac(self) -> bool:
        """Whether the model has an ATAC (Bernoulli) modality."""
        return ATAC in self.modalities

    # ------------------------------------------------------------------ training stages
    def _autoencoder_modules(self) -> list[torch.nn.Module]:
        modules: list[torch.nn.Module] = [self.encoder]
        if self.has_rna:
            modules.append(self.decoder)
        if self.has_atac:
            modules.append(self.decoder_atac)
        return modules

    def set_training_stage(self, stage: TrainingStage) -> None:
        """Choose which half trains: the autoencoder, or the flow on a frozen autoencoder.

        In the flow stage the autoencoder's parameters are frozen *and* its BatchNorm layers stay
        in eval mode whatever ``train()`` is called with, so latents never drift.
        """
        if stage not in ("autoencoder", "flow"):
            raise ValueError(f"Unknown training stage {stage!r}.")
        self._stage = stage
        for module in self._autoencoder_modules():
            module.requires_grad_(stage == "autoencoder")
        if self.has_rna:
            self.log_theta.requires_grad_(stage == "autoencoder")
        self.velocity_field.requires_grad_(stage == "flow")
        self.train(self.training)

    def train(self, mode: bool = True):
        """Set training mode; the autoencoder stays in eval mode during the flow stage."""
        super().train(mode)
        if getattr(self, "_stage", "autoencoder") == "flow":
            for module in self._autoencoder_modules():
                module.eval()
        return self

    # ------------------------------------------------------------------ autoencoder
    def _get_inference_input(self, tensors, **kwargs):
        return {"x": tensors.get(X_KEY), "x_atac": tensors.get(ATAC_X_KEY)}

    def encode(
        self, x: torch.Tensor | None = None, x_atac: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deterministic latent of RNA counts ``x`` and/or ATAC peaks ``x_atac``.

        Peaks are binarised here (minibatch by minibatch), then ``log1p`` is applied to every
        modality's input by its encoder body.
        """
        inputs = {}
        for name, value in ((RNA, x), (ATAC, x_atac)):
            if name in self.modalities:
                if value is None:
                    raise ValueError(f"This model needs the {name.upper()} modality to encode.")
                inputs[name] = binarize(value) if name == ATAC else value
        if isinstance(self.encoder, FusedEncoder):
            return self.encoder(inputs)
        return self.encoder(next(iter(inputs.values())))

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor | None = None,
        x_atac: torch.Tensor | None = None,
        n_samples: int = 1,
    ) -> dict[str, torch.Tensor | None]:
        """Encode to the deterministic latent; also return the observed RNA library size."""
        z = self.encode(x, x_atac)
        library = x.sum(dim=1, keepdim=True) if self.has_rna else None
        if n_samples > 1:
            z = z.unsqueeze(0).expand(n_samples, -1, -1)
            if library is not None:
                library = library.unsqueeze(0).expand(n_samples, -1, -1)
        return {"z": z, "library": library}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs):
        return {
            "z": inference_outputs["z"],
            "library": inference_outputs["library"],
            "cat_covs": tensors.get(CAT_COVS_KEY),
        }

    def dispersion_codes(self, cat_covs: torch.Tensor | None) -> torch.Tensor | None:
        """Codes of the dispersion attribute, or ``None`` for per-gene dispersion."""
        if self.dispersion_attribute_index is None or cat_covs is None:
            return None
        return cat_covs[..., self.dispersion_attribute_index].long()

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        library: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        transform_batch: None = None,
    ) -> dict[str, NegativeBinomial | torch.distributions.Bernoulli]:
        """Decode latents to each modality's likelihood.

        ``px``: NB(mu = library * softmax(decoder(z)), theta) over genes (with RNA);
        ``pa``: Bernoulli(logits = decoder_atac(z)) over peaks (with ATAC).
        """
        outputs: dict[str, NegativeBinomial | torch.distributions.Bernoulli] = {}
        if self.has_rna:
            scale = F.softmax(self.decoder(z), dim=-1)
            codes = self.dispersion_codes(cat_covs)
            if codes is None:
                theta = self.log_theta[0].exp()
            else:
                theta = self.log_theta[codes.reshape(-1)].exp().reshape(*scale.shape)
            outputs["px"] = NegativeBinomial(mu=library * scale, theta=theta, scale=scale)
        if self.has_atac:
            outputs["pa"] = torch.distributions.Bernoulli(logits=self.decoder_atac(z))
        return outputs

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Reconstruction loss: negative log-likelihoods, averaged over cells.

        Summed over features, then over modalities (NB for genes, Bernoulli for binarised
        peaks), weighted by ``rna_weight`` and ``atac_weight``.
        """
        per_modality = {}
        if self.has_rna:
            nll = -generative_outputs["px"].log_prob(tensors[X_KEY]).sum(dim=-1)
            per_modality[RNA] = (self.rna_weight, nll)
        if self.has_atac:
            peaks = binarize(tensors[ATAC_X_KEY])
            nll = -generative_outputs["pa"].log_prob(peaks).sum(dim=-1)
            per_modality[ATAC] = (self.atac_weight, nll)
        total = sum(weight * nll for weight, nll in per_modality.values())
        if len(per_modality) == 1:
            return LossOutput(loss=total.mean(), reconstruction_loss=total)
        reconstruction = {f"reconstruction_loss_{k}": v[1] for k, v in per_modality.items()}
        return LossOutput(loss=total.mean(), reconstruction_loss=reconstruction)

    @torch.inference_mode()
    def sample(
        self, tensors, n_samples: int = 1, generative_kwargs: dict | None = None
    ) -> torch.Tensor:
        """Counts drawn from the reconstruction of observed cells (scVI's posterior predictive).

        Returns shape ``(batch, genes)`` for one sample, else ``(batch, genes, n_samples)``.
        """
        if not self.has_rna:
            raise ValueError("This model has no RNA modality to sample counts from.")
        _, generative_outputs = self.forward(
            tensors,
            inference_kwargs={"n_samples": n_samples},
            generative_kwargs=generative_kwargs,
            compute_loss=False,
        )
        counts = generative_outputs["px"].sample()
        if n_samples > 1:
            counts = counts.permute(1, 2, 0)
        return counts.cpu()

    # ------------------------------------------------------------------ latent flow
    @torch.no_grad()
    def encode_standardized(
        self, x: torch.Tensor | None = None, x_atac: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encoder latents standardised with the training latents' mean and std."""
        return self.standardize_latent(self.encode(x, x_atac))

    def flow_loss(self, tensors) -> LossOutput:
        """Conditional flow matching loss on frozen, standardised latents.

        In eval mode (validation) the noise, times and condition dropout are drawn from a
        generator seeded by the minibatch's content, so every validation pass sees the same
        draws for the same cells: epoch-to-epoch changes of the validation loss then reflect the
        model, not the sampling noise, and early stopping can trust them.
        """
        x, x_atac = tensors.get(X_KEY), tensors.get(ATAC_X_KEY)
        z1 = self.encode_standardized(x, x_atac)
        generator = None
        if not self.training:
            first = x if self.has_rna else x_atac
            generator = torch.Generator(device=z1.device)
            generator.manual_seed(int(first.sum().item()) % (2**31) + first.shape[0])
        z0 = torch.randn(z1.shape, device=z1.device, generator=generator)
        if self.coupling == "ot":
            z0 = ot_pair_noise(z0, z1)
        t = torch.rand(z1.shape[0], device=z1.device, generator=generator)
        zt, target = self.path.sample(z0, z1, t)
        codes = tensors[CAT_COVS_KEY].long() if CAT_COVS_KEY in tensors else None
        if codes is None:
            codes = torch.zeros(z1.shape[0], 0, dtype=torch.long, device=z1.device)
        codes = drop_conditions(
            codes, self.null_codes, self.p_uncond, self.conditioning_scheme, generator
        )
        size = self.size_factor_condition(torch.log(x.sum(dim=1))) if self.has_rna else None
        velocity = self.velocity_field(zt, t, codes, size)
        per_cell = (velocity - target).pow(2).mean(dim=-1)
        return LossOutput(loss=per_cell.mean(), reconstruction_loss=per_cell)

    def size_factor_condition(self, log_library: torch.Tensor) -> torch.Tensor | None:
        """The flow's size-factor input (scaled log library), or ``None`` if it has none."""
        if not self.condition_on_size_factor:
            return None
        return self.statistics.scale_log_library(log_library)

    def guided_field(
        self,
        codes: torch.Tensor,
        weights: torch.Tensor,
        scaled_log_size_factor: torch.Tensor | None = None,
    ):
        """The guided velocity ``v(t, z)`` for fixed per-cell codes and weights (for solvers)."""

        def field(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return guided_velocity(
                self.velocity_field, z, t, codes, weights, self.null_codes, scaled_log_size_factor
            )

        return field

    @torch.inference_mode()
    def integrate_latent(
        self,
        z: torch.Tensor,
        codes: torch.Tensor,
        weights: torch.Tensor,
        scaled_log_size_factor: torch.Tensor | None = None,
        t_start: float = 0.0,
        t_end: float = 1.0,
        method: SolverMethod = "dopri5",
        n_steps: int = 100,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        backend: SolverBackend = "torchdiffeq",
    ) -> torch.Tensor:
        """Integrate the guided field in standardised latent units from ``t_start`` to ``t_end``.

        ``0 -> 1`` maps noise to latents; ``1 -> 0`` inverts latents to noise.
        """
        field = self.guided_field(codes, weights, scaled_log_size_factor)
        return integrate(field, z, t_start, t_end, method, n_steps, rtol, atol, backend)

    def standardize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder units to the flow's standardised units."""
        return (z - self.statistics.latent_mean) / self.statistics.latent_std

    def unstandardize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The flow's standardised units to encoder units."""
        return z * self.statistics.latent_std + self.statistics.latent_mean

    @torch.inference_mode()
    def sample_latent(
        self,
        noise: torch.Tensor,
        codes: torch.Tensor,
        weights: torch.Tensor,
        scaled_log_size_factor: torch.Tensor | None = None,
        **solver_kwargs,
    ) -> torch.Tensor:
        """Integrate the guided field from noise (t=0) to latents (t=1), in encoder units."""
        z = self.integrate_latent(noise, codes, weights, scaled_log_size_factor, **solver_kwargs)
        return self.unstandardize_latent(z)

    @torch.inference_mode()
    def sample_counts(
        self, z: torch.Tensor, library: torch.Tensor, dispersion_codes: torch.Tensor | None
    ) -> torch.Tensor:
        """Draw NB counts for latents ``z`` and library sizes ``library`` (batch,)."""
        cat_covs = None
        if dispersion_codes is not None:
            cat_covs = torch.zeros(
                z.shape[0], len(self.n_categories_per_attribute), device=z.device
            )
            cat_covs[:, self.dispersion_attribute_index] = dispersion_codes
        px = self.generative(z, library[:, None], cat_covs)["px"]
        return px.sample()

    @torch.inference_mode()
    def sample_peaks(self, z: torch.Tensor) -> torch.Tensor:
        """Draw 0/1 peak accessibility from Bernoulli(logits = decoder_atac(z))."""
        return torch.distributions.Bernoulli(logits=self.decoder_atac(z)).sample()

    @torch.inference_mode()
    def sample_modalities(
        self,
        z: torch.Tensor,
        library: torch.Tensor | None,
        dispersion_codes: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Draw every modality for latents ``z``: ``{"rna": counts, "atac": 0/1 peaks}``."""
        drawn = {}
        if self.has_rna:
            drawn[RNA] = self.sample_counts(z, library, dispersion_codes)
        if self.has_atac:
            drawn[ATAC] = self.sample_peaks(z)
        return drawn
