"""CFGenModel: the user-facing scvi-tools model."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import anndata as ad
import mudata as md
import numpy as np
from scvi.model.base import BaseModelClass

from scvi_cfgen._constants import ATAC, ATAC_X_KEY, RNA, X_KEY
from scvi_cfgen._validation import validate_counts
from scvi_cfgen.module import CFGenModule
from scvi_cfgen.module._data_statistics import SizeFactorLaw

from ._augmentation import AugmentationMixin
from ._backed_rows import RequestedOrderLoader, needs_requested_order
from ._clusters import CLUSTER_KEY, ClustersMixin, check_cluster_settings
from ._datamodule import model_registry
from ._feature_alignment import AlignedLoader, feature_orders
from ._generation import GenerationMixin
from ._latent_mode import latent_settings
from ._multimodal import feature_names, registered_modalities
from ._realism import RealismFilterMixin
from ._registered_data import RegisteredDataMixin
from ._safe_load import check_model_directory
from ._scvi_compat import ScviCompatMixin
from ._setup import SetupMixin
from ._size_defaults import LARGE_DATA_HIDDEN, default_dropout_rate, default_hidden_sizes
from ._training import TrainingMixin
from ._transfer import TransferMixin

_AUTO = "auto"


class CFGenModel(
    SetupMixin,
    TrainingMixin,
    ScviCompatMixin,
    GenerationMixin,
    RealismFilterMixin,
    TransferMixin,
    AugmentationMixin,
    ClustersMixin,
    RegisteredDataMixin,
    BaseModelClass,
):
    """CFGen: conditional generation of single-cell counts (Palma et al., ICLR 2025).

    A deterministic count autoencoder (negative binomial likelihood on raw counts) whose latent
    space is modelled by conditional flow matching with compositional classifier-free guidance.
    Trained in two stages by :meth:`train`; :meth:`generate` draws new cells as raw counts,
    conditioned on any subset of the registered attributes.

    With a MuData registered by :meth:`setup_mudata` the model is multimodal (paper section 4.2):
    RNA counts and ATAC peaks are encoded to one shared latent, decoded by a negative binomial
    over genes and a Bernoulli over (binarised) peaks, and :meth:`generate` returns a MuData.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, or MuData registered with
        :meth:`setup_mudata`. ``None`` with ``registry`` (used by :meth:`load`).
    registry
        Registry of a saved model (used by :meth:`load`), or of a scvi-tools data module to
        train from with ``train(datamodule=...)``: ``datamodule.registry`` (attributes: its
        categorical covariates) or :meth:`registry_from_datamodule` (attributes and gene names
        chosen).
    n_latent
        Latent dimension. Default: 50 (the paper's; 100 for large atlases), and one dimension
        per 10 registered cells below 500 cells (at least 10), so that the flow has enough
        cells per dimension. Not used with ``latent="genes"``, where it is the number of genes.
    n_hidden
        RNA encoder hidden sizes; the decoder mirrors them. Default with the bottleneck latent:
        ``(128, 64)`` up to 500 registered cells, ``(256, 128)`` at 2,000 and the paper's
        ``(512, 256)`` from 20,000 cells on, growing geometrically in ``log(cells)`` between:
        on a few hundred to two thousand cells the narrower autoencoder memorises its training
        cells less (see the benchmarks page, generalisation suite). With ``latent="genes"``
        (default ``(512, 256)``) the encoder goes down through these sizes and back up.
    dropout_rate
        Dropout probability after each hidden layer of the encoder in training (scVI's
        ``dropout_rate``). Default with the bottleneck latent: 0.5 on up to 500 registered
        cells, falling linearly in ``log(cells)`` to scVI's 0.1 from 2,000 cells on. It keeps
        the encoder from memorising its training cells (their latents, which the flow learns,
        then look like unseen cells'), which matters the more the fewer the cells (see the
        benchmarks page, generalisation suite). 0 with ``latent="genes"``, where it was not
        measured. The paper's autoencoder has none (``0``).
    dispersion
        ``"gene"``: one NB inverse dispersion per gene; ``"gene-covariate"``: one per gene and
        category of ``dispersion_covariate``.
    dispersion_covariate
        Attribute used with ``dispersion="gene-covariate"``.
    size_factor_covariate
        Attribute whose categories each get their own law of the size factor (total counts).
        ``"auto"`` takes the first registered attribute; ``None`` uses one global law.
    condition_on_size_factor
        Also condition the flow on the min-max scaled log size factor (sinusoidal embedding).
    size_factor_law
        How generated cells' size factors are drawn: ``"lognormal"`` (default, the paper's)
        from a log-normal law with the category's mean and standard deviation;
        ``"truncated_lognormal"`` from the same law restricted to the training cells' range
        of log total counts (the range the flow and decoder were trained on; level with the
        log-normal on the generalisation suite);
        ``"empirical"`` from the training cells' own distribution of log total counts in the
        category (its quantile function, interpolated), which keeps skewed depths and heavy
        left tails but also the sampling noise of small categories (it does not win across
        the generalisation suite; see the benchmarks page). All laws are fitted, so the law
        can be switched after training (``model.module.statistics.size_factor_law``; not
        saved: a loaded model draws from the law it was built with).
    flow_hidden_dim, flow_n_blocks, flow_condition_dim
        Width and number of residual blocks of the velocity network, and size of its
        conditioning embedding.
    p_uncond
        Per-cell probability of training the flow on the null (unconditional) condition.
    conditioning_scheme
        ``"single"``: each conditioned cell sees one randomly chosen attribute (the paper's
        scheme); ``"single_and_joint"`` also trains the joint condition.
    sigma_min
        Width of the linear Gaussian probability path at ``t = 1``.
    coupling
        ``"independent"`` noise/latent pairs, or minibatch exact optimal-transport pairs
        (``"ot"``, an assignment problem solved on the CPU), solved within each combination of
        attributes (so each condition's noise stays standard normal) and keeping each cell's
        attributes attached to it; with many combinations and few cells each, most groups hold
        one cell and OT pairs little. Default: ``"ot"`` in both latent modes (it wins on small
        data and ties elsewhere; see the benchmarks page). Models saved with the former default
        keep ``"independent"``.
    n_hidden_atac
        ATAC encoder hidden sizes (decoder mirrored; paper: ``(1024, 512)``). Only used with
        ATAC data from :meth:`setup_mudata`.
    modality_weights
        Weights of the reconstruction losses, e.g. ``{"rna": 1.0, "atac": 0.5}`` (default 1
        each); keys are ``"rna"`` and ``"atac"`` whatever the modalities are called in the MuData.
    count_split
        Binomial count splitting of the autoencoder: in training the encoder sees this fraction
        of each cell's RNA counts and the decoder is scored on the rest, so the latent cannot
        carry the cell's own sampling noise into the generated counts (default 0.5; see the
        model and benchmark pages). ``None``: the encoder sees all counts and the decoder
        reconstructs them (the paper's autoencoder).
    cluster_resolution
        Condition the flow on clusters instead of (or besides) registered labels: between the
        two training stages, every registered cell's latent is clustered by Leiden (scanpy's
        15-neighbour graph, igraph's Leiden at this resolution, seeded by
        ``scvi.settings.seed``) and the clusters become the attribute ``"cluster"`` (names
        ``"0"``, ``"1"``, ... by decreasing size), added after the registered ones. All
        registered cells are clustered, validation cells included: the clusters are inputs of
        the flow, not targets, and one graph gives every cell its code (the flow's validation
        loss needs them); attribute frequencies still come from the training cells. Read them
        with :meth:`get_clusters`. A single cluster gives a warning (the flow is then
        unconditional). Needs the ``igraph`` package. ``None`` (default): no clusters.
    latent
        ``"bottleneck"`` (default): CFGen's ``n_latent``-dimensional latent with an MLP
        decoder. ``"genes"``: cellFlow mode, no bottleneck: each cell's latent is the
        pre-softmax logit of its NB mean for every gene (the decoder is ``l * softmax(z)``),
        and the flow runs in that gene-sized space (exact minibatch OT coupling unless
        ``coupling`` says otherwise). RNA only. Memory and time grow with the number of genes:
        the flow's latent table holds ``n_genes`` floats per cell (see the benchmarks page).

    Examples
    --------
    >>> adata = scvi_cfgen.datasets.pbmc3k()
    >>> scvi_cfgen.CFGenModel.setup_anndata(adata, categorical_covariate_keys=["cell_type"])
    >>> model = scvi_cfgen.CFGenModel(adata)
    >>> model.train()
    >>> b_cells = model.generate(n_cells=500, conditions={"cell_type": "B"}, seed=0)

    Multiome (RNA + ATAC):

    >>> scvi_cfgen.CFGenModel.setup_mudata(
    ...     mdata,
    ...     categorical_covariate_keys=["cell_type"],
    ...     modalities={"rna_layer": "rna", "atac_layer": "atac"},
    ... )
    >>> model = scvi_cfgen.CFGenModel(mdata)
    >>> model.train()
    >>> generated = model.generate(n_cells=1000, conditions={"cell_type": "B"}, seed=0)

    No labels: condition on Leiden clusters of the latent space:

    >>> scvi_cfgen.CFGenModel.setup_anndata(adata)
    >>> model = scvi_cfgen.CFGenModel(adata, cluster_resolution=1.0)
    >>> model.train()
    >>> adata.obs["cfgen_cluster"] = model.get_clusters()
    >>> cluster_3 = model.generate(n_cells=500, conditions={"cluster": "3"}, seed=0)

    cellFlow mode (the flow models gene logits directly):

    >>> model = scvi_cfgen.CFGenModel(adata, latent="genes")
    """

    _module_cls = CFGenModule

    def __init__(
        self,
        adata: ad.AnnData | None = None,
        registry: dict | None = None,
        n_latent: int | None = None,
        n_hidden: Sequence[int] | None = None,
        dropout_rate: float | None = None,
        dispersion: Literal["gene", "gene-covariate"] = "gene",
        dispersion_covariate: str | None = None,
        size_factor_covariate: str | None = _AUTO,
        condition_on_size_factor: bool = False,
        size_factor_law: SizeFactorLaw = "lognormal",
        flow_hidden_dim: int = 512,
        flow_n_blocks: int = 3,
        flow_condition_dim: int = 128,
        p_uncond: float = 0.2,
        conditioning_scheme: Literal["single", "single_and_joint"] = "single",
        sigma_min: float = 1e-4,
        coupling: Literal["independent", "ot"] | None = None,
        n_hidden_atac: Sequence[int] = (1024, 512),
        modality_weights: Mapping[str, float] | None = None,
        count_split: float | None = 0.5,
        cluster_resolution: float | None = None,
        latent: Literal["bottleneck", "genes"] = "bottleneck",
    ):
        if adata is None and registry is not None:
            registry = model_registry(registry)
        super().__init__(adata, registry)
        attributes = self._registered_attributes()
        names = list(attributes)
        check_cluster_settings(cluster_resolution, names, dispersion_covariate)
        self.cluster_resolution = cluster_resolution
        n_genes = int(self.summary_stats.get("n_vars", 0)) if self.has_rna else 0
        n_peaks = int(self.summary_stats.get(f"n_{ATAC_X_KEY}", 0)) if self.has_atac else 0
        weights = dict(modality_weights or {})
        unknown = set(weights) - {RNA, ATAC}
        if unknown:
            raise ValueError(
                f"`modality_weights` keys must be 'rna' and/or 'atac', got {sorted(unknown)}."
            )
        if any(not np.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"`modality_weights` must be non-negative numbers, got {weights}.")
        if not self.has_rna:
            if condition_on_size_factor or dispersion != "gene":
                raise ValueError(
                    "An ATAC-only model has no RNA library size or dispersion: use "
                    "`condition_on_size_factor=False` and `dispersion='gene'`."
                )
            if size_factor_covariate not in (_AUTO, None):
                raise ValueError(
                    "An ATAC-only model has no size factor: leave out `size_factor_covariate`."
                )
            size_factor_covariate = None

        n_cells = self.summary_stats.get("n_cells") if self.adata is not None else None
        if dropout_rate is None:
            dropout_rate = 0.0 if latent == "genes" else default_dropout_rate(n_cells)
        if n_hidden is None:
            n_hidden = LARGE_DATA_HIDDEN if latent == "genes" else default_hidden_sizes(n_cells)
        n_latent, coupling = latent_settings(latent, n_latent, coupling, n_genes, n_peaks, n_cells)
        if dispersion not in ("gene", "gene-covariate"):
            raise ValueError(
                f"`dispersion` must be 'gene' or 'gene-covariate', not {dispersion!r}."
            )
        dispersion_index = None
        if dispersion == "gene-covariate":
            dispersion_index = self._attribute_index(dispersion_covariate, "dispersion_covariate")
        elif dispersion_covariate is not None:
            raise ValueError("`dispersion_covariate` needs `dispersion='gene-covariate'`.")
        if size_factor_covariate == _AUTO:
            size_factor_covariate = names[0] if names else None
            if size_factor_covariate is None and cluster_resolution is not None:
                size_factor_covariate = CLUSTER_KEY
        size_index = (
            None
            if size_factor_covariate is None
            or (size_factor_covariate == CLUSTER_KEY and cluster_resolution is not None)
            else self._attribute_index(size_factor_covariate, "size_factor_covariate")
        )

        self.size_factor_covariate = size_factor_covariate
        self.module = self._module_cls(
            n_input=n_genes,
            n_categories_per_attribute=[len(c) for c in attributes.values()],
            n_latent=n_latent,
            n_hidden=tuple(n_hidden),
            dropout_rate=dropout_rate,
            dispersion_attribute_index=dispersion_index,
            size_factor_attribute_index=size_index,
            condition_on_size_factor=condition_on_size_factor,
            size_factor_law=size_factor_law,
            flow_hidden_dim=flow_hidden_dim,
            flow_n_blocks=flow_n_blocks,
            flow_condition_dim=flow_condition_dim,
            p_uncond=p_uncond,
            conditioning_scheme=conditioning_scheme,
            sigma_min=sigma_min,
            coupling=coupling,
            n_input_atac=n_peaks,
            n_hidden_atac=tuple(n_hidden_atac),
            rna_weight=weights.get(RNA, 1.0),
            atac_weight=weights.get(ATAC, 1.0),
            count_split=count_split,
            latent_space=latent,
        )
        if adata is not None:
            if isinstance(adata, md.MuData):
                self.var_names_ = feature_names(self.registry_, X_KEY)
                self.peak_names_ = feature_names(self.registry_, ATAC_X_KEY)
            else:
                self.var_names_ = [str(name) for name in adata.var_names]
        elif self.has_rna:  # built on a registry (a data module's, or by ``load``)
            self.var_names_ = feature_names(self.registry_, X_KEY)
        clusters = (
            "" if cluster_resolution is None else f" + Leiden clusters ({cluster_resolution})"
        )
        features = [f"{n_genes} genes"] if self.has_rna else []
        if self.has_atac:
            features.append(f"{n_peaks} peaks (ATAC encoder {tuple(n_hidden_atac)})")
        self._model_summary_string = (
            f"{'cellFlow' if latent == 'genes' else 'CFGen'} model: {' + '.join(features)}, "
            f"latent {n_latent}{' (gene logits)' if latent == 'genes' else ''}, encoder "
            f"{tuple(n_hidden)}{f' (dropout {dropout_rate:g})' if dropout_rate else ''}, "
            f"attributes {names or 'none'}"
            f"{clusters}, {size_factor_law} size factor per "
            f"{size_factor_covariate or 'data set'}, dispersion {dispersion}, flow "
            f"{flow_n_blocks} x {flow_hidden_dim}."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ data passed in
    def _feature_orders(self, adata, where: str = "the cells passed in") -> dict:
        """Column permutations that put ``adata``'s features in training order (by name)."""
        return feature_orders(self._trained_feature_names(), adata, self.modality_names, where)

    def _validate_anndata(self, adata=None, copy_if_view: bool = True):
        """scvi-tools' validation, plus gene alignment and the raw-count checks for new cells.

        Genes (and peaks) are matched to the training ones by name: the same names in another
        order are used in training order, minibatch by minibatch (the matrix is not copied);
        missing or extra names raise a ``ValueError`` naming them.
        """
        if adata is None and self.adata is None:
            raise ValueError(
                "This model was loaded without data: pass the cells, e.g. "
                "`model.transfer(adata, to=...)`, or load it with "
                "`CFGenModel.load(dir_path, adata=adata)`."
            )
        if adata is not None and adata is not self.adata:
            self._feature_orders(adata)
        validated = super()._validate_anndata(adata, copy_if_view)
        if adata is not None and adata is not self.adata:
            manager = self.get_anndata_manager(validated, required=True)
            names = validated.obs_names
            if self.has_rna:
                validate_counts(
                    manager.get_from_registry(X_KEY), "The cells passed in", cell_names=names
                )
            if self.has_atac:
                validate_counts(
                    manager.get_from_registry(ATAC_X_KEY),
                    "The peaks passed in",
                    allow_empty_cells=True,
                    cell_names=names,
                )
        return validated

    def _make_data_loader(self, adata, indices=None, batch_size=None, shuffle=False, **kwargs):
        """scvi-tools' data loader, with each minibatch's columns in training order.

        Cells come in the order of ``indices``, also from backed data (which scvi-tools reads
        in increasing row order within a minibatch).
        """
        loader = super()._make_data_loader(adata, indices, batch_size, shuffle, **kwargs)
        if needs_requested_order(adata, indices, shuffle):
            loader = RequestedOrderLoader(loader, indices)
        orders = self._feature_orders(adata)
        return AlignedLoader(loader, orders) if orders else loader

    @classmethod
    def load(
        cls,
        dir_path: str | Path,
        adata: ad.AnnData | md.MuData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        backup_url: str | None = None,
        **kwargs,
    ) -> CFGenModel:
        """Load a model saved by :meth:`save` (scvi-tools' format).

        scvi-tools reads model files with ``torch.load(weights_only=False)``, which can run
        code planted in a file. The file is therefore first read by a restricted unpickler that
        allows only tensors, containers, strings, numbers and the numpy and pandas data types a
        CFGen model stores; a file that references anything else is refused before scvi-tools
        reads it. A missing, truncated or foreign file raises a ``ValueError`` naming it.

        Parameters
        ----------
        dir_path
            Directory the model was saved in.
        adata
            AnnData or MuData set up like the training data; ``None`` to generate without data.
            Its genes (and peaks) are matched to the training ones by name: another order is
            used in training order, missing or extra names raise a ``ValueError``.
        accelerator, device
            Where to load the model (Lightning names).
        prefix
            File-name prefix used by :meth:`save`.
        backup_url
            Not supported: models are read from disk only.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load`.
        """
        if backup_url is not None:
            raise ValueError("`backup_url` is not supported: download the model yourself.")
        saved = check_model_directory(Path(dir_path), prefix)
        reordered = False
        if adata is not None:
            registry = saved["attr_dict"].get("registry_") or {}
            trained = {
                key: names
                for key in (X_KEY, ATAC_X_KEY)
                if (names := feature_names(registry, key))
            }
            where = f"the data passed to `load` for {str(dir_path)!r}"
            orders = feature_orders(trained, adata, registered_modalities(registry), where)
            reordered = bool(orders)
        with warnings.catch_warnings():
            if reordered:  # scvi-tools warns about the order, which is handled here
                warnings.filterwarnings("ignore", message=".*var_names.*does not match")
            return super().load(
                str(dir_path), adata=adata, accelerator=accelerator, device=device,
                prefix=prefix, **kwargs,
            )  # fmt: skip
