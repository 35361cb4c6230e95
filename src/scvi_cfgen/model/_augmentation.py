"""Rare-cell augmentation with inverse-frequency sampling (CFGen section 5.4)."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch

from scvi_cfgen._constants import X_KEY

GENERATED_FLAG_KEY = "cfgen_generated"


class AugmentationMixin:
    """Adds :meth:`augment` and :meth:`augmentation_probabilities` to the model."""

    def augmentation_probabilities(self, label_key: str) -> pd.Series:
        """Probability of each category of ``label_key`` under the inverse-frequency rule.

        Categories seen in training get probability proportional to ``1 / count``; categories
        without training cells get 0.
        """
        attributes = self.attribute_categories
        if label_key not in attributes:
            raise ValueError(
                f"Unknown attribute {label_key!r}; the model was trained with {list(attributes)}."
            )
        index = list(attributes).index(label_key)
        counts = self.module.statistics.category_counts(index, len(attributes[label_key]))
        inverse = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
        return pd.Series(
            (inverse / inverse.sum()).numpy(),
            index=pd.Index(attributes[label_key], name=label_key),
        )

    def augment(
        self,
        n_total: int,
        label_key: str,
        seed: int | None = None,
        concatenate: bool = False,
        **generate_kwargs,
    ) -> ad.AnnData | md.MuData:
        """Generate cells that upsample rare categories, up to ``n_total`` cells in all.

        ``n_total`` minus the number of real cells (the registered AnnData, or the training cells
        of a model loaded without data) are generated; their ``label_key`` categories are drawn
        with probabilities proportional to the inverse of each category's training count, so
        rare categories gain the most.

        Parameters
        ----------
        n_total
            Target size of the augmented data set (real + generated).
        label_key
            Attribute to balance, e.g. ``"cell_type"``.
        seed
            Random seed (categories and cells).
        concatenate
            Return the real cells followed by the generated ones, flagged in
            ``obs['cfgen_generated']``; needs the registered AnnData, in memory (not
            backed).
        **generate_kwargs
            Passed to :meth:`generate` (solver, batch size, ...).

        Returns
        -------
        The generated cells, or real + generated cells with ``concatenate=True``.
        """
        probabilities = self.augmentation_probabilities(label_key)
        n_real = (
            self.adata.n_obs
            if self.adata is not None
            else int(self.module.statistics.combination_counts.sum().item())
        )
        if int(n_total) != n_total or n_total <= n_real:
            raise ValueError(
                f"`n_total` ({n_total}) must be an integer above the number of real cells "
                f"({n_real}); it is the size of the augmented data set."
            )
        if concatenate and self.adata is None:
            raise ValueError("`concatenate=True` needs the model's AnnData; load it with `adata`.")
        if concatenate and self.modality_names is not None:
            raise ValueError(
                "`concatenate=True` is for models set up with `setup_anndata`; for a MuData "
                "model concatenate each modality of the real and generated MuData yourself."
            )
        if concatenate and self.adata.isbacked:
            raise ValueError(
                "`concatenate=True` returns the real cells in memory, and the registered "
                "AnnData is backed (read from disk). Use `concatenate=False` and write the "
                "generated cells with `model.generate(..., out='cells.h5ad')`, or load the real "
                "cells first with `adata.to_memory()` if they fit in memory."
            )
        rng = np.random.default_rng(seed)
        labels = rng.choice(
            probabilities.index.to_numpy(), size=int(n_total) - n_real, p=probabilities.to_numpy()
        )
        conditions = pd.DataFrame({label_key: labels})
        generated = self.generate(conditions=conditions, seed=seed, **generate_kwargs)
        generated.uns["cfgen_augmentation"] = {
            "label_key": label_key,
            "probabilities": {str(k): float(v) for k, v in probabilities.items()},
        }
        if not concatenate:
            return generated
        real = ad.AnnData(
            X=self.adata_manager.get_from_registry(X_KEY),  # the registered counts, not copied
            obs=self.adata.obs.copy(),
            var=pd.DataFrame(index=self.adata.var_names),
        )
        real.obs[GENERATED_FLAG_KEY] = False
        generated.obs[GENERATED_FLAG_KEY] = True
        generated.X = generated.X.astype(real.X.dtype)
        combined = ad.concat([real, generated], join="outer", merge="same")
        combined.obs[label_key] = combined.obs[label_key].astype("category")
        return combined
