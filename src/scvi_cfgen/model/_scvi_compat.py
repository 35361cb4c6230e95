"""scVI's drop-ins: latent, normalised expression and posterior predictive samples.

They keep :class:`scvi.model.SCVI`'s signatures and return types. scvi-tools' own
:class:`~scvi.model.base.RNASeqMixin` is not reused: it samples latents from a posterior ``qz``
(CFGen's encoder is deterministic), it transforms to other batches through a batch covariate of
the decoder (CFGen's decoder has none; :meth:`~scvi_cfgen.CFGenModel.transfer` moves cells
instead), and it names genes by ``adata.var_names``, which for a MuData model are not the genes
of the RNA modality. Here genes are always returned in training order, named by
:attr:`~scvi_cfgen.CFGenModel.gene_names`, whatever the order of the cells passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ._model_state import encode_cells, require_rna, require_stage


class ScviCompatMixin:
    """Adds scVI's latent, normalised-expression and posterior-predictive methods."""

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: ad.AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Deterministic latent representation of cells (the encoder's output).

        Parameters
        ----------
        adata
            AnnData with the training genes, or MuData with the training modalities for a
            multimodal model; ``None`` for the registered one.
        indices
            Cells to encode; ``None`` for all.
        batch_size
            Minibatch size; ``None`` for scvi-tools' default.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)``.
        """
        require_stage(self, "autoencoder", "get_latent_representation")
        adata = self._validate_anndata(adata)
        return encode_cells(self, adata, indices, batch_size).numpy()

    # ------------------------------------------------------------------ scVI drop-ins
    def _decoded_batches(self, adata, indices, batch_size, data_loader_kwargs=None):
        """Yield ``(tensors, NegativeBinomial)`` of observed cells, minibatch by minibatch."""
        require_stage(self, "autoencoder", "get_normalized_expression/posterior_predictive_sample")
        require_rna(self, "get_normalized_expression/posterior_predictive_sample")
        adata = self._validate_anndata(adata)
        self.module.eval()
        loader = self._make_data_loader(
            adata=adata, indices=indices, batch_size=batch_size, **(data_loader_kwargs or {})
        )
        for tensors in loader:
            _, generative_outputs = self.module.forward(tensors, compute_loss=False)
            yield tensors, generative_outputs["px"]

    def _gene_mask(self, gene_list) -> np.ndarray | slice:
        """Columns of the decoded genes (training order) that are in ``gene_list``."""
        if gene_list is None:
            return slice(None)
        mask = np.asarray(self.gene_names.isin(gene_list))
        if not mask.any():
            raise ValueError("None of the genes in `gene_list` are among the model's genes.")
        return mask

    @staticmethod
    def _check_no_transform_batch(transform_batch) -> None:
        if transform_batch is not None:
            raise ValueError(
                "CFGen's decoder is not conditioned on a batch, so `transform_batch` must be "
                "None. To move cells to another batch, condition the generation on it instead."
            )

    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: ad.AnnData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: None = None,
        gene_list: Sequence[str] | None = None,
        library_size: float | Literal["latent"] = 1,
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        weights: Literal["uniform"] | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        silent: bool = True,
        **data_loader_kwargs,
    ) -> np.ndarray | pd.DataFrame:
        """Decoded expression of observed cells, with :class:`scvi.model.SCVI`'s signature.

        Returns ``library_size * softmax(decoder(encoder(x)))`` per cell (``library_size="latent"``
        uses each cell's observed total counts). CFGen's latent is deterministic, so the
        ``n_samples`` draws are identical; its decoder is not conditioned on a batch, so
        ``transform_batch`` must be ``None``; only ``weights="uniform"`` is available.
        Multimodal models return the RNA modality (an ATAC-only model raises ``ValueError``).

        Returns
        -------
        A cells x genes DataFrame, or an array if ``return_numpy`` (shape
        ``(n_samples, n_cells, n_genes)`` when ``n_samples > 1`` and not ``return_mean``).
        """
        self._check_no_transform_batch(transform_batch)
        if weights not in (None, "uniform"):
            raise ValueError(
                "CFGen has a deterministic encoder: only `weights='uniform'` applies."
            )
        adata = self._validate_anndata(adata)
        mask = self._gene_mask(gene_list)
        parts = []
        for _, px in self._decoded_batches(adata, indices, batch_size, data_loader_kwargs):
            values = px.mu if library_size == "latent" else px.scale * float(library_size)
            parts.append(values[:, mask].cpu().numpy())
        expression = np.concatenate(parts)
        cells = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        if n_samples_overall is not None:
            rows = np.random.default_rng().choice(len(expression), n_samples_overall)
            expression, cells = expression[rows], cells[rows]
            return_numpy = True if return_numpy is None else return_numpy
        elif n_samples > 1 and not return_mean:
            expression = np.broadcast_to(expression, (n_samples, *expression.shape)).copy()
            return_numpy = True
        if return_numpy:
            return expression
        return pd.DataFrame(expression, index=cells, columns=self.gene_names[mask])

    @torch.inference_mode()
    def posterior_predictive_sample(
        self,
        adata: ad.AnnData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: None = None,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        batch_size: int | None = None,
        silent: bool = True,
        **data_loader_kwargs,
    ):
        """Counts resampled from the reconstruction of observed cells, as in SCVI.

        Same signature and return type as :meth:`scvi.model.SCVI.posterior_predictive_sample`:
        each cell is encoded, decoded with its observed library size and negative binomial
        counts are drawn. To generate new cells from noise, use :meth:`generate`. Multimodal
        models sample the RNA modality (an ATAC-only model raises ``ValueError``).

        Returns
        -------
        ``sparse.GCXS`` array of shape ``(n_cells, n_genes)`` if ``n_samples == 1``, else
        ``(n_cells, n_genes, n_samples)``.
        """
        import sparse

        self._check_no_transform_batch(transform_batch)
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"`n_samples` must be a positive integer, got {n_samples!r}.")
        adata = self._validate_anndata(adata)
        mask = self._gene_mask(gene_list)
        parts = []
        for _, px in self._decoded_batches(adata, indices, batch_size, data_loader_kwargs):
            draws = px.sample() if n_samples == 1 else px.sample((n_samples,)).permute(1, 2, 0)
            parts.append(sparse.GCXS.from_numpy(draws[:, mask].cpu().numpy()))
        return sparse.concatenate(parts, axis=0)
