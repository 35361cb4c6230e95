"""The count autoencoder: RNA (negative binomial) and/or ATAC (Bernoulli) to one latent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from scvi_cfgen._constants import ATAC, ATAC_X_KEY, CAT_COVS_KEY, RNA, X_KEY

from ._networks import CountDecoder, CountEncoder, FusedEncoder

LatentSpace = Literal["bottleneck", "genes"]
LATENT_SPACES = get_args(LatentSpace)


def minibatch_generator(x: torch.Tensor) -> torch.Generator:
    """A generator seeded by a minibatch's content, for common random numbers in validation.

    The same cells give the same seed at every epoch, so draws made with it (count splits, flow
    noise) repeat and epoch-to-epoch changes of a validation loss reflect the model.
    """
    generator = torch.Generator(device=x.device)
    generator.manual_seed(int(x.sum().item()) % (2**31) + x.shape[0])
    return generator


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Peak counts to 0/1 accessibility (any count above zero is accessible), as floats."""
    return (x > 0).to(torch.float32)


class CountAutoencoder(BaseModuleClass):
    """Deterministic count autoencoder with scvi-tools' ``inference``/``generative``/``loss``.

    RNA counts are decoded to ``NB(mu = library * softmax(decoder(z)), theta)``; ATAC peaks to
    ``Bernoulli(logits = decoder_atac(z))`` on binarised peaks. With both modalities one encoder
    body per modality is concatenated and mapped by one linear layer to the shared latent (paper
    section 4.2); the two negative log-likelihoods are summed with ``rna_weight`` and
    ``atac_weight``. ``n_input=0`` gives an ATAC-only autoencoder (no library, no dispersion).

    Parameters
    ----------
    n_input
        Number of genes (0 without RNA).
    n_latent
        Latent dimension.
    n_hidden
        RNA encoder hidden sizes (the decoder mirrors them).
    n_dispersion_categories
        Rows of the inverse-dispersion table: 1 for one value per gene, else the number of
        categories of the dispersion attribute.
    dispersion_attribute_index
        Column of the categorical covariates that selects the dispersion row (``None``: row 0).
    n_input_atac
        Number of ATAC peaks (0 without ATAC).
    n_hidden_atac
        ATAC encoder hidden sizes.
    rna_weight, atac_weight
        Weights of the two reconstruction losses.
    count_split
        Fraction of each training cell's RNA counts that the encoder sees; the decoder is scored
        on the other part (binomial count splitting, see :meth:`split_counts`). ``None``: the
        encoder sees all counts and the decoder reconstructs them (the paper's autoencoder).
    latent_space
        ``"bottleneck"``: a latent of ``n_latent`` dimensions decoded by an MLP (CFGen).
        ``"genes"``: no bottleneck (cellFlow, CFGen's predecessor): the encoder goes down
        through ``n_hidden`` and back up through the mirrored sizes to one value per gene, the
        pre-softmax logit of the NB mean, and the decoder is the identity
        (``mu = library * softmax(z)``). RNA only; ``n_latent`` is the number of genes.
    dropout_rate
        Dropout probability after each hidden layer of the encoder (bodies of every
        modality), active in training only.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 50,
        n_hidden: Sequence[int] = (512, 256),
        n_dispersion_categories: int = 1,
        dispersion_attribute_index: int | None = None,
        n_input_atac: int = 0,
        n_hidden_atac: Sequence[int] = (1024, 512),
        rna_weight: float = 1.0,
        atac_weight: float = 1.0,
        count_split: float | None = None,
        latent_space: LatentSpace = "bottleneck",
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        if n_input <= 0 and n_input_atac <= 0:
            raise ValueError("The autoencoder needs genes (`n_input`) or peaks (`n_input_atac`).")
        if latent_space not in LATENT_SPACES:
            raise ValueError(
                f"`latent_space` must be one of {LATENT_SPACES}, not {latent_space!r}."
            )
        if latent_space == "genes":
            if n_input <= 0 or n_input_atac > 0:
                raise ValueError(
                    "`latent_space='genes'` (cellFlow) models RNA counts only; use the "
                    "bottleneck latent for ATAC or multiome data."
                )
            n_latent = n_input
        if n_latent < 1 or not n_hidden or any(int(h) < 1 for h in n_hidden):
            raise ValueError("`n_latent` must be positive and `n_hidden` non-empty and positive.")
        if not 0 <= dropout_rate < 1:
            raise ValueError(f"`dropout_rate` must be in [0, 1), got {dropout_rate}.")
        if n_dispersion_categories < 1:
            raise ValueError("`n_dispersion_categories` must be at least 1.")
        if n_dispersion_categories > 1 and dispersion_attribute_index is None:
            raise ValueError("Several dispersion rows need a `dispersion_attribute_index`.")
        for name, weight in (("rna_weight", rna_weight), ("atac_weight", atac_weight)):
            if not weight >= 0:
                raise ValueError(f"`{name}` must be a non-negative number, got {weight}.")
        if count_split is not None and not 0 < count_split < 1:
            raise ValueError(f"`count_split` must be in (0, 1) or None, got {count_split}.")
        self.count_split = None if count_split is None or n_input <= 0 else float(count_split)
        # Scale of the counts the encoder was trained on: saved with the weights, so a model
        # loaded from disk encodes like the model that was trained (1: all counts).
        self.register_buffer("encoder_input_scale", torch.tensor(self.count_split or 1.0))
        self.n_input = int(n_input)
        self.n_input_atac = int(n_input_atac)
        self.n_latent = int(n_latent)
        self.rna_weight = float(rna_weight)
        self.atac_weight = float(atac_weight)
        self.dispersion_attribute_index = dispersion_attribute_index
        self.latent_space = latent_space

        n_inputs = {RNA: self.n_input, ATAC: self.n_input_atac}
        hidden = {RNA: tuple(n_hidden), ATAC: tuple(n_hidden_atac)}
        self.modalities: tuple[str, ...] = tuple(name for name in n_inputs if n_inputs[name] > 0)
        if latent_space == "genes":
            hourglass = (*n_hidden, *reversed(tuple(n_hidden)[:-1]))
            self.encoder = CountEncoder(n_input, n_input, hourglass, dropout_rate)
        elif len(self.modalities) == 1:
            (name,) = self.modalities
            self.encoder = CountEncoder(n_inputs[name], n_latent, hidden[name], dropout_rate)
        else:
            self.encoder = FusedEncoder(n_inputs, n_latent, hidden, dropout_rate)
        if self.has_rna:
            self.decoder = (
                torch.nn.Identity()
                if latent_space == "genes"
                else CountDecoder(n_latent, n_input, n_hidden)
            )
            self.log_theta = torch.nn.Parameter(torch.zeros(n_dispersion_categories, n_input))
        if self.has_atac:
            self.decoder_atac = CountDecoder(n_latent, n_input_atac, n_hidden_atac)

    @property
    def has_rna(self) -> bool:
        """Whether there is an RNA (negative binomial) modality."""
        return RNA in self.modalities

    @property
    def has_atac(self) -> bool:
        """Whether there is an ATAC (Bernoulli) modality."""
        return ATAC in self.modalities

    def encode(
        self, x: torch.Tensor | None = None, x_atac: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deterministic latent of RNA counts ``x`` and/or ATAC peaks ``x_atac``.

        Peaks are binarised here (minibatch by minibatch), then ``log1p`` is applied to every
        modality's input by its encoder body. With count splitting the encoder was trained on a
        fraction ``count_split`` of the counts, so it is given their expectation,
        ``count_split * x``.
        """
        if x is not None and self.has_rna:
            x = x * self.encoder_input_scale
        return self._encode_inputs(x, x_atac)

    def split_counts(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Binomial count splitting: ``(seen, held_out)`` with ``seen ~ Binomial(x, count_split)``.

        For Poisson counts the two parts are independent given the cell's expression, so a
        decoder that predicts the held-out part from the seen part cannot learn the cell's own
        sampling noise: it learns the expected profile, and the negative binomial dispersion
        learns the spread around it. A decoder that reconstructs the very counts its encoder saw
        can memorise their noise in the latent, which is then drawn a second time when counts are
        sampled (too many zeros and too much variance on small or shallow data).
        """
        seen = torch.binomial(x, torch.full_like(x, self.count_split), generator=generator)
        return seen, x - seen

    def _encode_inputs(
        self, x: torch.Tensor | None = None, x_atac: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = {}
        for name, value in ((RNA, x), (ATAC, x_atac)):
            if name in self.modalities:
                if value is None:
                    raise ValueError(f"This model needs the {name.upper()} modality to encode.")
                inputs[name] = binarize(value) if name == ATAC else value
        if isinstance(self.encoder, FusedEncoder):
            return self.encoder(inputs)
        return self.encoder(next(iter(inputs.values())))

    def _get_inference_input(self, tensors, **kwargs):
        return {"x": tensors.get(X_KEY), "x_atac": tensors.get(ATAC_X_KEY)}

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor | None = None,
        x_atac: torch.Tensor | None = None,
        n_samples: int = 1,
        split_counts: bool = False,
    ) -> dict[str, torch.Tensor | None]:
        """Encode to the deterministic latent; also return the observed RNA library size.

        With ``split_counts`` (training with count splitting) the encoder sees a binomial part
        of the counts and ``x_target``, the other part, is what the decoder is scored on (its
        library size is returned). Validation (eval mode) draws the split from a generator
        seeded by the minibatch, so every validation pass splits the same cells the same way.
        """
        if split_counts and self.count_split is not None and x is not None:
            generator = None if self.training else minibatch_generator(x)
            seen, target = self.split_counts(x, generator)
            z = self._encode_inputs(seen, x_atac)
            return {"z": z, "library": target.sum(dim=1, keepdim=True), "x_target": target}
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

    def _theta(self, dispersion_codes: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
        if dispersion_codes is None:
            return self.log_theta[0].exp()
        return self.log_theta[dispersion_codes.reshape(-1)].exp().reshape(*shape)

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
            theta = self._theta(self.dispersion_codes(cat_covs), scale.shape)
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
            target = inference_outputs.get("x_target")
            target = tensors[X_KEY] if target is None else target
            nll = -generative_outputs["px"].log_prob(target).sum(dim=-1)
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

    def count_distribution(
        self, z: torch.Tensor, library: torch.Tensor, dispersion_codes: torch.Tensor | None
    ) -> NegativeBinomial:
        """NB over genes for latents ``z`` and library sizes ``library`` (batch,)."""
        scale = F.softmax(self.decoder(z), dim=-1)
        theta = self._theta(dispersion_codes, scale.shape)
        return NegativeBinomial(mu=library[:, None] * scale, theta=theta.expand_as(scale))

    def peak_distribution(self, z: torch.Tensor) -> torch.distributions.Bernoulli:
        """Bernoulli(logits = decoder_atac(z)) over peaks."""
        return torch.distributions.Bernoulli(logits=self.decoder_atac(z))

    @torch.inference_mode()
    def sample_counts(
        self, z: torch.Tensor, library: torch.Tensor, dispersion_codes: torch.Tensor | None
    ) -> torch.Tensor:
        """Draw NB counts for latents ``z`` and library sizes ``library`` (batch,)."""
        return self.count_distribution(z, library, dispersion_codes).sample()

    @torch.inference_mode()
    def sample_peaks(self, z: torch.Tensor) -> torch.Tensor:
        """Draw 0/1 peak accessibility from Bernoulli(logits = decoder_atac(z))."""
        return self.peak_distribution(z).sample()

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
