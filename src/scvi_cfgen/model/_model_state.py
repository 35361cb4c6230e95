"""What a model has been trained for, and encoding cells with it (shared by its mixins)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from scvi_cfgen._constants import ATAC_X_KEY, X_KEY


def trained_stages(model) -> list[str]:
    """Stages that finished training, in order: ``[]``, ``["autoencoder"]`` or both."""
    stages = getattr(model, "trained_stages_", None)
    if stages is None:  # saved by scvi-cfgen 0.1, which trained both stages or none
        return ["autoencoder", "flow"] if getattr(model, "is_trained_", False) else []
    return list(stages)


def require_stage(model, stage: str, method: str) -> None:
    """Raise a ``ValueError`` naming ``method`` if ``stage`` has not finished training."""
    if stage in trained_stages(model):
        return
    done = trained_stages(model)
    how = "`train()`" if not done else "`train_flow()`"
    raise ValueError(
        f"`{method}` needs a trained {stage}, and this model's trained stages are "
        f"{done or 'none'}. Call {how} first."
    )


def require_rna(model, method: str) -> None:
    """Raise a ``ValueError`` if the model has no RNA modality."""
    if not model.has_rna:
        raise ValueError(
            f"`{method}` works on RNA counts, and this model has no RNA modality "
            "(ATAC only). Use `generate` or `get_latent_representation`."
        )


def encoded_batches(model, adata, indices, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Encoder latents (on the CPU) of cells of a validated ``adata``, one minibatch at a time.

    Minibatches come in the order of ``indices`` (all cells in order for ``None``).
    """
    model.module.eval()
    loader = model._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
    for batch in loader:
        x, x_atac = (batch.get(key) for key in (X_KEY, ATAC_X_KEY))
        x, x_atac = (None if t is None else t.to(model.device) for t in (x, x_atac))
        with torch.inference_mode():  # not held across the yield
            latent = model.module.encode(x, x_atac).cpu()
        yield latent


def encode_cells(model, adata, indices, batch_size: int | None) -> torch.Tensor:
    """Encoder latents of cells of a validated ``adata`` (on the CPU), minibatch by minibatch."""
    return torch.cat(list(encoded_batches(model, adata, indices, batch_size)))


def latent_moments(model, adata, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (unbiased) standard deviation of the cells' latents.

    Accumulated minibatch by minibatch (:class:`RunningMoments`), so memory does not grow with
    the number of cells.
    """
    moments = RunningMoments()
    for latent in encoded_batches(model, adata, indices, None):
        moments.add(latent)
    return moments.result()


class RunningMoments:
    """Per-column mean and unbiased standard deviation of rows added block by block.

    Float64 accumulation with Chan et al.'s pairwise update: memory does not grow with the
    number of rows, and the result does not depend on how the rows are split into blocks.
    """

    def __init__(self):
        self.count, self.mean, self.squares = 0, None, None

    def add(self, rows: torch.Tensor) -> None:
        """Add a ``(n, d)`` block of rows."""
        rows = rows.double()
        n = rows.shape[0]
        if n == 0:
            return
        batch_mean = rows.mean(dim=0)
        batch_squares = ((rows - batch_mean) ** 2).sum(dim=0)
        if self.mean is None:
            self.count, self.mean, self.squares = n, batch_mean, batch_squares
            return
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * (n / total)
        self.squares = self.squares + batch_squares + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (float32; NaN standard deviation for one row)."""
        squares = self.squares
        if self.count > 1:
            variance = squares / (self.count - 1)
        else:
            variance = torch.full_like(squares, float("nan"))
        return self.mean.float(), variance.sqrt().float()
