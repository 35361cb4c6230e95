"""Statistics learned from the training cells, in buffers that ``save``/``load`` restore."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

SizeFactorLaw = Literal["empirical", "lognormal", "truncated_lognormal"]
SIZE_FACTOR_LAWS: tuple[str, ...] = get_args(SizeFactorLaw)

#: Probabilities at which the empirical size-factor law stores each category's quantiles.
N_LIBRARY_QUANTILES = 1001


class ResizableBufferMixin:
    """Adopt the saved shape of the buffers listed in ``_resizable_buffers`` on load.

    Their size depends on the training data (e.g. the number of attribute combinations seen), so
    the module rebuilt by ``load`` cannot know it before the state dict arrives.
    """

    _resizable_buffers: tuple[str, ...] = ()
    #: Buffers that models saved by earlier versions lack; they keep their initial value.
    _optional_buffers: tuple[str, ...] = ()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, *args, **kwargs
    ):
        for name in self._resizable_buffers:
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, *args, **kwargs
        )
        for name in self._optional_buffers:
            if prefix + name in missing_keys:
                missing_keys.remove(prefix + name)


class DataStatistics(ResizableBufferMixin, nn.Module):
    """Attribute frequencies, per-category size-factor laws and latent moments.

    Parameters
    ----------
    n_attributes
        Number of categorical attributes.
    n_size_factor_categories
        Number of categories of the size-factor attribute (1 for one global law).
    n_latent
        Latent dimension (for the latent standardisation statistics).
    size_factor_law
        ``"empirical"``: log library sizes are drawn from each category's empirical
        distribution (its quantile function at :data:`N_LIBRARY_QUANTILES` probabilities,
        interpolated linearly: the training cells' own law, tails included);
        ``"lognormal"``: from a normal law with the category's mean and standard deviation
        (the paper's); ``"truncated_lognormal"``: the same law restricted to the range of the
        training cells' log library sizes (the range the flow's size-factor input and the
        decoder were trained on). Every law is fitted whichever is chosen, so the attribute
        can be changed after training.
    """

    _resizable_buffers = ("combinations", "combination_counts", "log_library_quantiles")
    _optional_buffers = ("log_library_quantiles",)

    def __init__(
        self,
        n_attributes: int,
        n_size_factor_categories: int,
        n_latent: int,
        size_factor_law: SizeFactorLaw = "lognormal",
    ):
        super().__init__()
        if size_factor_law not in SIZE_FACTOR_LAWS:
            raise ValueError(
                f"`size_factor_law` must be one of {SIZE_FACTOR_LAWS}, not {size_factor_law!r}."
            )
        self.size_factor_law = size_factor_law
        self.register_buffer("combinations", torch.zeros(1, n_attributes, dtype=torch.long))
        self.register_buffer("combination_counts", torch.ones(1))
        self.register_buffer("log_library_mean", torch.zeros(n_size_factor_categories))
        self.register_buffer("log_library_std", torch.ones(n_size_factor_categories))
        self.register_buffer("log_library_min", torch.zeros(()))
        self.register_buffer("log_library_max", torch.ones(()))
        # (categories, 0) until fitted, and in models saved before it existed: log-normal
        self.register_buffer("log_library_quantiles", torch.zeros(n_size_factor_categories, 0))
        self.register_buffer("latent_mean", torch.zeros(n_latent))
        self.register_buffer("latent_std", torch.ones(n_latent))

    @torch.no_grad()
    def fit_attributes_and_sizes(
        self,
        codes: torch.Tensor,
        log_library: torch.Tensor,
        size_factor_codes: torch.Tensor | None,
    ) -> None:
        """Record attribute-combination counts and size-factor parameters of training cells."""
        if codes.shape[1] == 0:  # unconditional model: one empty combination
            combinations, counts = codes[:1].long(), torch.tensor([codes.shape[0]])
        else:
            combinations, counts = torch.unique(codes.long(), dim=0, return_counts=True)
        self.combinations = combinations.to(self.combinations.device)
        self.combination_counts = counts.float().to(self.combination_counts.device)
        log_library = log_library.double()
        groups = (
            torch.zeros_like(log_library, dtype=torch.long)
            if size_factor_codes is None
            else size_factor_codes.long()
        )
        global_std = log_library.std() if log_library.numel() > 1 else log_library.new_tensor(0.0)
        probabilities = np.linspace(0.0, 1.0, N_LIBRARY_QUANTILES)
        quantiles = torch.zeros(self.log_library_mean.numel(), N_LIBRARY_QUANTILES)
        for category in range(self.log_library_mean.numel()):
            values = log_library[groups == category]
            if values.numel() == 0:  # category absent from training cells: use the global law
                values = log_library
            self.log_library_mean[category] = values.mean().float()
            std = values.std() if values.numel() > 1 else global_std
            self.log_library_std[category] = std.float()
            if values.numel() == 1:  # one cell: its depth with the global law's spread
                values = log_library - log_library.mean() + values
            quantiles[category] = torch.from_numpy(
                np.quantile(values.cpu().numpy(), probabilities)
            ).float()
        self.log_library_quantiles = quantiles.to(self.log_library_mean.device)
        self.log_library_min.fill_(float(log_library.min()))
        self.log_library_max.fill_(float(log_library.max()))

    @torch.no_grad()
    def fit_latent(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Record per-dimension mean and standard deviation of the training latents."""
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp_min(1e-6))

    def scale_log_library(self, log_library: torch.Tensor) -> torch.Tensor:
        """Min-max scale log library sizes to ``[0, 1]`` with the training range."""
        span = (self.log_library_max - self.log_library_min).clamp_min(1e-6)
        return (log_library - self.log_library_min) / span

    def sample_missing_attributes(self, codes: torch.Tensor) -> torch.Tensor:
        """Fill codes marked ``-1`` by sampling training combinations that match the given ones.

        Where no training cell has the given combination (an unseen intersection), the missing
        attributes are drawn from all training combinations, i.e. at their overall frequencies.
        Uses the global torch random generator.
        """
        codes = codes.clone()
        missing = codes < 0
        if not bool(missing.any()):
            return codes
        patterns, inverse = torch.unique(
            torch.where(missing, -1, codes), dim=0, return_inverse=True
        )
        for index, pattern in enumerate(patterns):
            given = pattern >= 0
            match = (self.combinations[:, given] == pattern[given]).all(dim=1)
            weights = self.combination_counts * match
            if float(weights.sum()) == 0:
                weights = self.combination_counts
            rows = torch.nonzero(inverse == index).flatten()
            draws = torch.multinomial(weights, rows.numel(), replacement=True)
            codes[rows] = torch.where(missing[rows], self.combinations[draws], codes[rows])
        return codes

    def category_counts(self, attribute_index: int, n_categories: int) -> torch.Tensor:
        """Training cells of each category of one attribute, ``(n_categories,)`` float64."""
        counts = torch.zeros(n_categories, dtype=torch.float64)
        counts.index_add_(
            0,
            self.combinations[:, attribute_index].cpu(),
            self.combination_counts.cpu().double(),
        )
        return counts

    @property
    def fitted_size_factor_law(self) -> SizeFactorLaw:
        """The law :meth:`sample_log_library` draws from.

        ``size_factor_law``, except in models saved before the empirical law existed: they have
        no quantiles and keep the log-normal law.
        """
        if self.size_factor_law != "empirical":
            return self.size_factor_law
        return "empirical" if self.log_library_quantiles.shape[1] > 1 else "lognormal"

    def sample_log_library(self, size_factor_codes: torch.Tensor | None, n: int) -> torch.Tensor:
        """Draw log library sizes from each cell's category law (:attr:`size_factor_law`).

        The empirical law inverts the category's piecewise-linear quantile function at a
        uniform draw, the truncated log-normal the normal's distribution function restricted to
        the training range. Uses the global torch random generator.
        """
        device = self.log_library_mean.device
        groups = (
            torch.zeros(n, dtype=torch.long, device=device)
            if size_factor_codes is None
            else size_factor_codes.long()
        )
        if self.fitted_size_factor_law == "empirical":
            quantiles = self.log_library_quantiles
            position = torch.rand(n, device=device) * (quantiles.shape[1] - 1)
            lower = position.floor().long().clamp(max=quantiles.shape[1] - 2)
            fraction = position - lower
            below, above = quantiles[groups, lower], quantiles[groups, lower + 1]
            return below + fraction * (above - below)
        mean, std = self.log_library_mean[groups], self.log_library_std[groups]
        if self.fitted_size_factor_law == "lognormal":
            return mean + std * torch.randn(n, device=device)
        return truncated_normal(mean, std, self.log_library_min, self.log_library_max)


def truncated_normal(
    mean: torch.Tensor, std: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> torch.Tensor:
    """Draws of normal laws restricted to ``[low, high]`` by inverting their distribution function.

    Inversion rather than clamping: no probability piles up at the bounds. The uniform draw is
    the normal distribution function of a standard normal draw, so a seed gives nearly the same
    values as the untruncated law wherever the bounds are far. Double precision keeps far tails
    exact; a zero standard deviation gives the mean (clipped to the range).
    """
    mean, std = mean.double(), std.double().clamp_min(1e-12)
    low, high = low.double(), high.double()
    lower = torch.special.ndtr((low - mean) / std)
    upper = torch.special.ndtr((high - mean) / std)
    noise = torch.randn(mean.shape, device=mean.device).double()
    uniform = torch.special.ndtr(noise)
    probability = (lower + uniform * (upper - lower)).clamp(1e-15, 1 - 1e-15)
    draws = mean + std * torch.special.ndtri(probability)
    return torch.minimum(torch.maximum(draws, low), high).float()
