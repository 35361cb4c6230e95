"""The flow's attributes at the start of each stage: registered ones, then derived clusters."""

from __future__ import annotations

import numpy as np

from ._clusters import clusters_cover_registered_cells, derive_clusters, drop_clusters
from ._training_statistics import fit_data_statistics


def drop_clusters_of_other_cells(model) -> None:
    """Before the autoencoder: forget clusters that do not cover the registered cells.

    Clusters that do cover them stay until the autoencoder has trained (a failed stage then
    leaves the model as it was); they are dropped when it finishes.
    """
    if model.cluster_categories_ is not None and not clusters_cover_registered_cells(model):
        drop_clusters(model)


def prepare_flow_conditioning(model, splitter) -> None:
    """Before the flow: derive clusters if the model asks for them and has none current.

    Clusters are current when they were derived after the autoencoder last trained and cover
    the registered cells; :meth:`~scvi_cfgen.CFGenModel.train_flow` then keeps them (and the
    flow's weights). New clusters rebuild the flow's conditioning and refit the attribute
    frequencies and size-factor laws on the training cells of ``splitter`` (an AnnData
    split: clustered models refuse data modules, whose rows are not AnnData rows).
    """
    if model.cluster_resolution is None:
        return
    if not model._flow_on_latent_table:
        raise ValueError(
            "A flow conditioned on clusters trains on the latent table (which holds each "
            "cell's cluster); set `_flow_on_latent_table = True`."
        )
    if not clusters_cover_registered_cells(model):
        derive_clusters(model)
        fit_data_statistics(model, np.asarray(splitter.train_idx))
