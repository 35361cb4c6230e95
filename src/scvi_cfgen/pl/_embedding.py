"""Real and generated cells in one embedding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def real_vs_generated_embedding(
    real_embedding: np.ndarray,
    real_labels: Sequence,
    generated_embedding: np.ndarray,
    generated_labels: Sequence,
    method: str = "umap",
    title: str | None = None,
    seed: int = 0,
):
    """Overlay real and generated cells in one 2-D embedding, coloured by label and by origin.

    Parameters
    ----------
    real_embedding, generated_embedding
        Cells in a shared space (e.g. :class:`~scvi_cfgen.metrics.PCAProjection` outputs).
    real_labels, generated_labels
        Labels (e.g. cell types) of each set.
    method
        ``"umap"`` (scanpy's, on the joint k-NN graph) or ``"pca"`` (first two components).
    title
        Figure title.
    seed
        Seed of the UMAP layout.

    Returns
    -------
    The matplotlib figure (two panels).
    """
    import anndata as ad
    import matplotlib.pyplot as plt
    import scanpy as sc

    points = np.concatenate([real_embedding, generated_embedding]).astype(np.float32)
    labels = np.concatenate([np.asarray(real_labels, str), np.asarray(generated_labels, str)])
    origin = np.repeat(["real", "generated"], [len(real_embedding), len(generated_embedding)])
    if method == "umap":
        joint = ad.AnnData(
            obsm={"X_pca": points}, obs=pd.DataFrame(index=map(str, range(len(points))))
        )
        sc.pp.neighbors(joint, use_rep="X_pca", random_state=seed)
        sc.tl.umap(joint, random_state=seed)
        layout, axis_name = joint.obsm["X_umap"], "UMAP"
    elif method == "pca":
        layout, axis_name = points[:, :2], "PC"
    else:
        raise ValueError(f"`method` must be 'umap' or 'pca', not {method!r}.")

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    categories = sorted(set(labels))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(categories), 2)))
    for colour, category in zip(colours, categories, strict=False):
        for kind, marker in (("real", "o"), ("generated", "^")):
            mask = (labels == category) & (origin == kind)
            axes[0].scatter(
                *layout[mask].T,
                s=6,
                color=colour,
                marker=marker,
                alpha=0.7,
                label=category if kind == "real" else None,
            )
    axes[0].set_title("by label (o real, ^ generated)")
    axes[0].legend(markerscale=3, fontsize=8, frameon=False, loc="best")
    for kind, colour in (("real", "tab:grey"), ("generated", "tab:red")):
        mask = origin == kind
        axes[1].scatter(*layout[mask].T, s=6, color=colour, alpha=0.6, label=kind)
    axes[1].set_title("by origin")
    axes[1].legend(markerscale=3, frameon=False)
    for axis in axes:
        axis.set_xlabel(f"{axis_name} 1")
        axis.set_ylabel(f"{axis_name} 2")
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
