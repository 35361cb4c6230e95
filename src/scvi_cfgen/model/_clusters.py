"""Conditions from clusters: Leiden clusters of the autoencoder's latents as an attribute."""

from __future__ import annotations

import importlib.util
import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from scvi import settings

from scvi_cfgen._constants import CAT_COVS_KEY

from ._model_state import encoded_batches

logger = logging.getLogger(__name__)

#: Name of the attribute that holds the derived clusters.
CLUSTER_KEY = "cluster"
#: Cells encoded per forward pass when the latents are clustered.
CLUSTER_ENCODING_BATCH_SIZE = 1024
#: Neighbours of each cell in the graph that Leiden partitions (scanpy's default).
CLUSTER_N_NEIGHBORS = 15


def check_cluster_settings(
    cluster_resolution: float | None,
    registered: list[str],
    dispersion_covariate: str | None,
) -> None:
    """Refuse, at ``__init__``, settings of ``cluster_resolution`` that cannot work."""
    if cluster_resolution is None:
        return
    if isinstance(cluster_resolution, bool) or not isinstance(
        cluster_resolution, int | float | np.number
    ):
        raise ValueError(
            f"`cluster_resolution` must be a positive number, got {cluster_resolution!r}."
        )
    if not np.isfinite(cluster_resolution) or cluster_resolution <= 0:
        raise ValueError(
            f"`cluster_resolution` must be a positive number (Leiden's resolution; 1.0 is "
            f"scanpy's default, higher gives more clusters), got {cluster_resolution}."
        )
    if CLUSTER_KEY in registered:
        raise ValueError(
            f"`cluster_resolution` adds an attribute named {CLUSTER_KEY!r}, and an attribute "
            f"of that name is already registered ({registered}). Rename the obs column before "
            "`setup_anndata`, or drop `cluster_resolution`."
        )
    if dispersion_covariate == CLUSTER_KEY:
        raise ValueError(
            "`dispersion_covariate='cluster'` is not possible: the autoencoder (which holds the "
            "dispersions) is trained before the clusters exist. Use a registered attribute."
        )
    if importlib.util.find_spec("igraph") is None:
        raise ImportError(
            "`cluster_resolution` clusters with scanpy's Leiden (igraph flavour), which needs "
            "the `igraph` package: `pip install igraph` (or `pip install scvi-cfgen[clusters]`)."
        )


def leiden_clusters(latents: np.ndarray, resolution: float, seed: int) -> np.ndarray:
    """Leiden cluster of each row of ``latents``: scanpy's neighbours graph, igraph's Leiden.

    Returns integer codes ``0..k-1`` numbered by decreasing cluster size (scanpy's order).
    """
    import scanpy as sc

    cells = ad.AnnData(obs=pd.DataFrame(index=np.arange(len(latents)).astype(str)))
    cells.obsm["X_cfgen"] = latents
    sc.pp.neighbors(cells, n_neighbors=CLUSTER_N_NEIGHBORS, use_rep="X_cfgen", random_state=seed)
    sc.tl.leiden(
        cells,
        resolution=resolution,
        random_state=seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
    )
    return cells.obs["leiden"].cat.codes.to_numpy().astype(np.int64)


def encoded_latents(model) -> np.ndarray:
    """Encoder latents of every registered cell, in row order, filled minibatch by minibatch."""
    n_cells = model.adata_manager.adata.n_obs
    latents = np.empty((n_cells, model.module.n_latent), dtype=np.float32)
    start = 0
    for latent in encoded_batches(model, model.adata, None, CLUSTER_ENCODING_BATCH_SIZE):
        latents[start : start + latent.shape[0]] = latent.numpy()
        start += latent.shape[0]
    return latents


def registered_cluster_codes(model) -> np.ndarray | None:
    """Cluster code of each registered cell (by name), or ``None`` if some have none."""
    codes = getattr(model, "cluster_codes_", None)
    if codes is None or model.adata is None:
        return None
    names = np.asarray(model.adata.obs_names).astype(str)
    stored = np.asarray(model.cluster_obs_names_)
    if len(names) == len(stored) and np.array_equal(names, stored):
        return np.asarray(codes, dtype=np.int64)
    positions = pd.Index(stored).get_indexer(names)
    if (positions < 0).any():
        return None
    return np.asarray(codes, dtype=np.int64)[positions]


def cluster_codes_of(model, obs_names: pd.Index) -> np.ndarray:
    """Cluster codes of cells named ``obs_names``; a ``ValueError`` for cells without one."""
    positions = pd.Index(np.asarray(model.cluster_obs_names_)).get_indexer(
        np.asarray(obs_names).astype(str)
    )
    if (positions < 0).any():
        missing = list(pd.Index(obs_names)[positions < 0][:5])
        raise ValueError(
            f"{int((positions < 0).sum())} cells (e.g. {missing}) are not among the cells the "
            "clusters were derived from, so their own cluster is unknown. Pass cells of the "
            "training data (matched by `obs_names`)."
        )
    return np.asarray(model.cluster_codes_, dtype=np.int64)[positions]


def attribute_codes(model) -> np.ndarray:
    """Codes ``(n_cells, n_attributes)`` of every registered cell: registered, then clusters."""
    manager = model.adata_manager
    n_cells = manager.adata.n_obs
    if model._registered_attributes():
        codes = np.asarray(manager.get_from_registry(CAT_COVS_KEY)).reshape(n_cells, -1)
    else:
        codes = np.zeros((n_cells, 0), dtype=np.int64)
    if getattr(model, "cluster_categories_", None) is None:
        return codes
    clusters = registered_cluster_codes(model)
    if clusters is None:
        raise ValueError(
            "The registered cells are not the cells the clusters were derived from; train the "
            "flow (`train_flow()`) to cluster them."
        )
    return np.concatenate([codes.astype(np.int64), clusters[:, None]], axis=1)


def _forget_flow(model) -> None:
    """The flow was rebuilt for other attributes: it is no longer trained."""
    model.trained_stages_ = [s for s in model.trained_stages if s != "flow"]
    model.is_trained_ = False


def derive_clusters(model) -> None:
    """Cluster every registered cell's latent and condition the flow on the clusters.

    Rebuilds the flow's conditioning (the flow starts untrained) for the attributes plus
    ``"cluster"``; the caller refits the attribute statistics.
    """
    latents = encoded_latents(model)
    seed = int(settings.seed or 0)
    codes = leiden_clusters(latents, model.cluster_resolution, seed)
    n_clusters = int(codes.max()) + 1
    logger.info(
        "Leiden (resolution %s) found %d clusters in the latents of %d cells.",
        model.cluster_resolution,
        n_clusters,
        len(codes),
    )
    if n_clusters == 1:
        warnings.warn(
            f"Leiden clustering at resolution {model.cluster_resolution} found a single "
            f"cluster, so conditioning on {CLUSTER_KEY!r} is the same as no conditioning: the "
            "flow is then unconditional. Use a higher `cluster_resolution` for several "
            "clusters.",
            UserWarning,
            stacklevel=4,
        )
    model.cluster_categories_ = np.arange(n_clusters).astype(str)
    model.cluster_codes_ = codes.astype(np.int32)
    model.cluster_obs_names_ = np.asarray(model.adata.obs_names).astype(str)
    model._rebuild_conditioning()
    _forget_flow(model)


def drop_clusters(model) -> None:
    """Forget clusters (derived from an earlier autoencoder, or from other cells).

    The flow conditioned on them is rebuilt without them, untrained.
    """
    if getattr(model, "cluster_categories_", None) is None:
        return
    model.cluster_categories_ = model.cluster_codes_ = model.cluster_obs_names_ = None
    model._rebuild_conditioning()
    _forget_flow(model)


def clusters_cover_registered_cells(model) -> bool:
    """Whether there are clusters and every registered cell has one."""
    return (
        getattr(model, "cluster_categories_", None) is not None
        and registered_cluster_codes(model) is not None
    )


def cluster_snapshot(model) -> tuple:
    """The model's clusters, to put back with :func:`restore_clusters`."""
    return (model.cluster_categories_, model.cluster_codes_, model.cluster_obs_names_)


def restore_clusters(model, snapshot: tuple) -> None:
    """Put back clusters from :func:`cluster_snapshot` and size the module for them."""
    model.cluster_categories_, model.cluster_codes_, model.cluster_obs_names_ = snapshot
    model.module.on_load(model)


class ClustersMixin:
    """Adds :meth:`get_clusters` and the bookkeeping of derived clusters to the model."""

    cluster_categories_: np.ndarray | None = None
    cluster_codes_: np.ndarray | None = None
    cluster_obs_names_: np.ndarray | None = None

    def get_clusters(self) -> pd.Series:
        """Leiden cluster of each cell the clusters were derived from (``cluster_resolution``).

        Clusters are derived between the two training stages from the trained autoencoder's
        latents of every registered cell (training and validation cells), and the flow is
        conditioned on them as the attribute ``"cluster"``. They are saved with the model.

        Returns
        -------
        Categorical series of cluster names (``"0"``, ``"1"``, ... by decreasing size), indexed
        by the cells' ``obs_names``; e.g. ``adata.obs["cfgen_cluster"] = model.get_clusters()``.
        """
        if getattr(self, "cluster_resolution", None) is None:
            raise ValueError(
                "This model has no clusters: build it with `CFGenModel(adata, "
                "cluster_resolution=1.0)` to condition on Leiden clusters."
            )
        if self.cluster_categories_ is None:
            raise ValueError(
                "The clusters are derived when the flow stage starts: call `train()` (or "
                "`train_flow()` after `train_autoencoder()`) first."
            )
        return pd.Series(
            pd.Categorical.from_codes(
                np.asarray(self.cluster_codes_), categories=self.cluster_categories_
            ),
            index=pd.Index(self.cluster_obs_names_),
            name=CLUSTER_KEY,
        )

    def _conditioning_sizes(self) -> tuple[list[int], int | None]:
        """Categories per attribute and index of the size-factor attribute, for the module."""
        names = list(self.attribute_categories)
        sizes = [len(categories) for categories in self.attribute_categories.values()]
        covariate = self.size_factor_covariate
        return sizes, names.index(covariate) if covariate in names else None

    def _rebuild_conditioning(self) -> None:
        """Size the module's flow, statistics and scorer for the current attributes."""
        self.module.build_conditioning(*self._conditioning_sizes())
