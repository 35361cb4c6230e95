"""The optional realism filter: a real-vs-generated scorer trained after the flow, and its use."""

from __future__ import annotations

import numpy as np
import torch
from scvi.utils import track
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from scvi_cfgen._constants import CAT_COVS_KEY, LATENT_KEY, LOG_LIBRARY_KEY
from scvi_cfgen.module._realism import keep_most_real, oversampled_groups
from scvi_cfgen.module._solvers import GENERATION_SOLVER, GENERATION_STEPS, solver_options

from ._latent_table import latent_table
from ._model_state import require_stage
from ._schedule import EARLY_STOPPING_PATIENCE_STEPS

#: ``obs`` column of the realism logit of each cell generated with ``keep_fraction``.
REALISM_SCORE_KEY = "realism_score"
#: Optimiser steps of the scorer at most (early stopping usually ends it sooner).
REALISM_MAX_STEPS = 5_000


def candidate_noise(seed: int, start: int, n: int, n_latent: int) -> torch.Tensor:
    """Noise of the ``n`` candidates of the chunk starting at cell ``start`` (on the CPU)."""
    state = np.random.SeedSequence([seed, start, 0x5CD]).generate_state(1, dtype=np.uint64)[0]
    return torch.randn(n, n_latent, generator=torch.Generator().manual_seed(int(state)))


def check_keep_fraction(module, keep_fraction: float | None, libraries_given: bool) -> None:
    """Raise a ``ValueError`` if ``generate(keep_fraction=...)`` cannot be honoured."""
    if keep_fraction is None:
        return
    if isinstance(keep_fraction, bool) or not 0.0 < float(keep_fraction) <= 1.0:
        raise ValueError(
            f"`keep_fraction` must be in (0, 1], e.g. 0.8 to keep the most real-looking 80 % of "
            f"the cells; got {keep_fraction!r}."
        )
    if not bool(module.realism.trained):
        raise ValueError(
            "`keep_fraction` needs the realism scorer: call `model.train_realism_filter()` "
            "after training (it is saved with the model)."
        )
    if libraries_given and module.flow.condition_on_size_factor:
        raise ValueError(
            "`keep_fraction` with `library_size` is not available for a model whose flow "
            "conditions on size factors (kept cells may come from another cell's size factor)."
        )


def filter_latents(
    module, codes, weights, log_libraries, keep_fraction, seed, chunk, solver, progress_bar
):
    """The most real-looking latents, chunk by chunk, and their size factors and scores.

    In every chunk of ``chunk`` cells, cells with the same conditions form a group; a group of
    ``k`` cells gets ``ceil(k / keep_fraction)`` candidates with its conditions and keeps its
    ``k`` best by realism score. Returns the latents (encoder units), the log libraries (a
    candidate carries the size factor of the row it copied when the flow conditions on size
    factors) and the realism logits, one per cell.
    """
    latents = torch.empty(len(codes), module.n_latent, device=codes.device)
    libraries = log_libraries.clone()
    scores = torch.empty(len(codes), device=codes.device)
    starts = range(0, len(codes), chunk)
    for start in track(
        starts, description="Filtering cells", disable=not progress_bar or len(starts) < 2
    ):
        rows = slice(start, start + chunk)
        sources, groups = oversampled_groups(codes[rows], keep_fraction)
        candidate_codes = codes[rows][sources]
        candidate_libraries = log_libraries[rows][sources]
        noise = candidate_noise(seed, start, len(sources), module.n_latent).to(codes.device)
        z = module.integrate_latent(
            noise,
            candidate_codes,
            weights.expand(len(sources), -1),
            module.size_factor_condition(candidate_libraries),
            **solver,
        )
        candidate_scores = module.realism(z, candidate_codes)
        kept_rows, kept = keep_most_real(candidate_scores, groups)
        kept = kept[torch.argsort(kept_rows)]
        latents[rows] = module.unstandardize_latent(z[kept])
        scores[rows] = candidate_scores[kept]
        if module.flow.condition_on_size_factor:
            libraries[rows] = candidate_libraries[kept]
    return latents, libraries, scores


def real_vs_generated(scorer, real, fake, codes, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """The scorer's logits for the real then the generated latents of ``rows``, and targets."""
    rows = torch.as_tensor(np.asarray(rows), device=real.device)
    logits = scorer(torch.cat([real[rows], fake[rows]]), torch.cat([codes[rows]] * 2))
    target = torch.cat([torch.ones(len(rows)), torch.zeros(len(rows))]).to(real.device)
    return logits, target


class RealismFilterMixin:
    """Adds :meth:`train_realism_filter`, used by ``generate(keep_fraction=...)``."""

    def train_realism_filter(
        self,
        max_steps: int = REALISM_MAX_STEPS,
        batch_size: int = 256,
        lr: float = 1e-3,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> dict:
        """Train the scorer that ``generate(keep_fraction=...)`` ranks generated cells with.

        The post-guidance of single-cell latent diffusion (SCLD): a three-layer classifier
        (binary cross-entropy) learns to tell the standardised latents of the registered cells
        from latents the trained flow generates for the same conditions (and size factors). It
        trains on the model's training cells and stops when its loss on the validation cells has
        not improved for 200 optimiser steps. The filter keeps the most real-looking cells, so it
        trims the tails of the generated distribution: see the benchmarks page before using it.

        Parameters
        ----------
        max_steps
            Optimiser steps at most.
        batch_size
            Minibatch size (half real, half generated latents).
        lr
            Learning rate (Adam).
        seed
            Seed of the generated latents, the initial weights and the minibatch order.
        progress_bar
            Show a progress bar over the generated latents.

        Returns
        -------
        The summary also kept in ``model.realism_summary_``: optimiser steps, best validation
        loss and the validation AUC (0.5: the scorer cannot tell generated latents from real).
        """
        require_stage(self, "flow", "train_realism_filter")
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"`max_steps` must be a positive integer, got {max_steps}.")
        module = self.module.eval()
        device = self.device
        table = latent_table(self)
        real = torch.as_tensor(np.asarray(table.get_from_registry(LATENT_KEY)), device=device)
        n_cells = len(real)
        codes = (
            np.asarray(table.get_from_registry(CAT_COVS_KEY))
            if self.attribute_categories
            else np.zeros((n_cells, 0))
        )
        codes = torch.as_tensor(codes, dtype=torch.long, device=device).reshape(n_cells, -1)
        log_libraries = torch.as_tensor(
            np.asarray(table.get_from_registry(LOG_LIBRARY_KEY), dtype=np.float32), device=device
        ).reshape(n_cells)
        fake = self._generated_like(codes, log_libraries, seed, progress_bar)

        train_idx, val_idx = self._realism_split(n_cells, seed)
        scorer = module.realism
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for layer in scorer.network:
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        scorer.to(device).requires_grad_(True).train()
        optimizer = torch.optim.Adam(scorer.parameters(), lr=lr)
        half = max(1, batch_size // 2)
        per_epoch = max(1, int(np.ceil(len(train_idx) / half)))
        best = (np.inf, None, 0)
        step = 0
        try:
            with torch.enable_grad():
                while step < max_steps and step - best[2] < EARLY_STOPPING_PATIENCE_STEPS:
                    order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
                    for start in range(0, len(order), half):
                        rows = order[start : start + half]
                        logits, target = real_vs_generated(scorer, real, fake, codes, rows)
                        loss = F.binary_cross_entropy_with_logits(logits, target)
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        step += 1
                        if step >= max_steps:
                            break
                    with torch.inference_mode():
                        logits, target = real_vs_generated(scorer, real, fake, codes, val_idx)
                        validation_loss = float(F.binary_cross_entropy_with_logits(logits, target))
                    if validation_loss < best[0]:
                        state = {k: v.detach().clone() for k, v in scorer.state_dict().items()}
                        best = (validation_loss, state, step)
        finally:
            scorer.requires_grad_(False).eval()
        scorer.load_state_dict(best[1])
        scorer.trained.fill_(True)
        with torch.inference_mode():
            logits, target = real_vs_generated(scorer, real, fake, codes, val_idx)
        self.realism_summary_ = {
            "steps": step,
            "epochs": int(np.ceil(step / per_epoch)),
            "best_step": best[2],
            "validation_loss": float(best[0]),
            "validation_auc": float(roc_auc_score(target.cpu().numpy(), logits.cpu().numpy())),
        }
        return self.realism_summary_

    @torch.inference_mode()
    def _generated_like(self, codes, log_libraries, seed: int, progress_bar: bool):
        """Standardised latents generated for the given conditions and size factors."""
        module = self.module
        solver = solver_options(GENERATION_SOLVER, GENERATION_STEPS, 1e-5, 1e-5, "torchdiffeq")
        weights = torch.ones(codes.shape[1], device=codes.device)
        chunks = range(0, len(codes), 1024)
        parts = []
        for start in track(
            chunks, description="Generating latents", disable=not progress_bar or len(chunks) < 2
        ):
            rows = slice(start, start + 1024)
            noise = candidate_noise(seed, start, len(codes[rows]), module.n_latent)
            parts.append(
                module.integrate_latent(
                    noise.to(codes.device),
                    codes[rows],
                    weights.expand(len(codes[rows]), -1),
                    module.size_factor_condition(log_libraries[rows]),
                    **solver,
                )
            )
        return torch.cat(parts).clone()

    def _realism_split(self, n_cells: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's own train/validation split, or a seeded 90/10 one (loaded models)."""
        train_idx, val_idx = self.train_indices, self.validation_indices
        known = train_idx is not None and val_idx is not None and len(val_idx) > 0
        if known and max(np.max(train_idx), np.max(val_idx)) < n_cells:
            return np.asarray(train_idx), np.asarray(val_idx)
        order = np.random.default_rng(seed).permutation(n_cells)
        n_val = max(1, n_cells // 10)
        return order[n_val:], order[:n_val]
