"""CFGenModel: the user-facing scvi-tools model."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalJointObsField, LayerField
from scvi.dataloaders import DataSplitter
from scvi.model._utils import get_max_epochs_heuristic
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp, track

from scvi_cfgen._constants import (
    ATAC,
    ATAC_X_KEY,
    CAT_COVS_KEY,
    RNA,
    SIZE_FACTOR_OBS_KEY,
    X_KEY,
)
from scvi_cfgen._validation import row_sums, validate_counts
from scvi_cfgen.module import CFGenModule
from scvi_cfgen.module._solvers import SolverBackend, SolverMethod, solver_options
from scvi_cfgen.train import AutoencoderTrainingPlan, FlowTrainingPlan

from ._augmentation import AugmentationMixin
from ._conditions import resolve_conditions, resolve_weights
from ._multimodal import (
    assemble_output,
    build_mudata_manager,
    check_attribute_columns,
    feature_names,
    registered_modalities,
)
from ._transfer import TransferMixin

logger = logging.getLogger(__name__)

_AUTO = "auto"


class CFGenModel(TransferMixin, AugmentationMixin, BaseModelClass):
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
        Registry of a saved model; only used by :meth:`load`.
    n_latent
        Latent dimension (paper: 50; 100 for large atlases).
    n_hidden
        Encoder hidden sizes; the decoder mirrors them (paper: ``(512, 256)``).
    dispersion
        ``"gene"``: one NB inverse dispersion per gene; ``"gene-covariate"``: one per gene and
        category of ``dispersion_covariate``.
    dispersion_covariate
        Attribute used with ``dispersion="gene-covariate"``.
    size_factor_covariate
        Attribute whose categories each get a log-normal law of the size factor (total counts).
        ``"auto"`` takes the first registered attribute; ``None`` uses one global law.
    condition_on_size_factor
        Also condition the flow on the min-max scaled log size factor (sinusoidal embedding).
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
        (``"ot"``, POT), which keep each cell's attributes attached to it.
    n_hidden_atac
        ATAC encoder hidden sizes (decoder mirrored; paper: ``(1024, 512)``). Only used with
        ATAC data from :meth:`setup_mudata`.
    modality_weights
        Weights of the reconstruction losses, e.g. ``{"rna": 1.0, "atac": 0.5}`` (default 1
        each); keys are ``"rna"`` and ``"atac"`` whatever the modalities are called in the MuData.

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
    """

    _module_cls = CFGenModule
    _data_splitter_cls = DataSplitter
    _autoencoder_plan_cls = AutoencoderTrainingPlan
    _flow_plan_cls = FlowTrainingPlan
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: ad.AnnData | None = None,
        registry: dict | None = None,
        n_latent: int = 50,
        n_hidden: Sequence[int] = (512, 256),
        dispersion: Literal["gene", "gene-covariate"] = "gene",
        dispersion_covariate: str | None = None,
        size_factor_covariate: str | None = _AUTO,
        condition_on_size_factor: bool = False,
        flow_hidden_dim: int = 512,
        flow_n_blocks: int = 3,
        flow_condition_dim: int = 128,
        p_uncond: float = 0.2,
        conditioning_scheme: Literal["single", "single_and_joint"] = "single",
        sigma_min: float = 1e-4,
        coupling: Literal["independent", "ot"] = "independent",
        n_hidden_atac: Sequence[int] = (1024, 512),
        modality_weights: Mapping[str, float] | None = None,
    ):
        super().__init__(adata, registry)
        attributes = self.attribute_categories
        names = list(attributes)
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
        size_index = (
            None
            if size_factor_covariate is None
            else self._attribute_index(size_factor_covariate, "size_factor_covariate")
        )
        if not 0 <= p_uncond < 1:
            raise ValueError(f"`p_uncond` must be in [0, 1), got {p_uncond}.")
        if conditioning_scheme not in ("single", "single_and_joint"):
            raise ValueError(
                f"`conditioning_scheme` must be 'single' or 'single_and_joint', "
                f"not {conditioning_scheme!r}."
            )
        if coupling not in ("independent", "ot"):
            raise ValueError(f"`coupling` must be 'independent' or 'ot', not {coupling!r}.")
        if n_latent < 1 or not n_hidden:
            raise ValueError("`n_latent` must be positive and `n_hidden` non-empty.")

        self.size_factor_covariate = size_factor_covariate
        self.module = self._module_cls(
            n_input=n_genes,
            n_categories_per_attribute=[len(c) for c in attributes.values()],
            n_latent=n_latent,
            n_hidden=tuple(n_hidden),
            dispersion_attribute_index=dispersion_index,
            size_factor_attribute_index=size_index,
            condition_on_size_factor=condition_on_size_factor,
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
        )
        if adata is not None:
            if isinstance(adata, md.MuData):
                self.var_names_ = feature_names(self.registry_, X_KEY)
                self.peak_names_ = feature_names(self.registry_, ATAC_X_KEY)
            else:
                self.var_names_ = [str(name) for name in adata.var_names]
        features = [f"{n_genes} genes"] if self.has_rna else []
        if self.has_atac:
            features.append(f"{n_peaks} peaks (ATAC encoder {tuple(n_hidden_atac)})")
        self._model_summary_string = (
            f"CFGen model: {' + '.join(features)}, latent {n_latent}, encoder "
            f"{tuple(n_hidden)}, attributes {names or 'none'}, size factor per "
            f"{size_factor_covariate or 'data set'}, dispersion {dispersion}, flow "
            f"{flow_n_blocks} x {flow_hidden_dim}."
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        layer: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        **kwargs,
    ):
        """Register an AnnData of raw counts and the attributes to condition on.

        The count matrix is checked chunk by chunk (never copied or densified): negative or
        non-integer values, NaN and cells without counts raise a ``ValueError``.

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        categorical_covariate_keys
            ``adata.obs`` columns of the attributes to condition on (cell type, donor, batch...).
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if layer is not None and layer not in adata.layers:
            raise ValueError(
                f"Layer {layer!r} not found; available layers: {list(adata.layers) or 'none'}. "
                "Use `layer=None` for adata.X."
            )
        matrix = adata.X if layer is None else adata.layers[layer]
        if matrix is None:
            raise ValueError("adata.X is empty; pass the layer that holds the raw counts.")
        validate_counts(matrix, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
        keys = list(categorical_covariate_keys or [])
        if isinstance(categorical_covariate_keys, str):
            raise ValueError("`categorical_covariate_keys` must be a list of column names.")
        check_attribute_columns(adata.obs, keys, "adata.obs")
        fields = [
            LayerField(X_KEY, layer, is_count_data=True),
            CategoricalJointObsField(CAT_COVS_KEY, keys or None),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_mudata(
        cls,
        mdata: md.MuData,
        rna_layer: str | None = None,
        atac_layer: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ):
        """Register a multiome MuData: RNA counts and/or ATAC peaks, and the attributes.

        RNA + ATAC, RNA only or ATAC only, selected by ``modalities``. Data are checked chunk by
        chunk before any training, never densified: RNA must hold raw counts (no NaN, negative
        or non-integer values, no empty cells); ATAC must hold non-negative integer peak counts
        or 0/1 values. Peak counts are **binarised** (any count above zero is "accessible")
        minibatch by minibatch for the Bernoulli likelihood, so fragment or read counts per peak
        and 0/1 matrices give the same model. Every registered modality must hold the same cells
        in the same order as the MuData.

        Parameters
        ----------
        mdata
            MuData with the modalities named in ``modalities``.
        rna_layer
            Layer of the RNA modality with raw counts; ``None`` for its ``X``.
        atac_layer
            Layer of the ATAC modality with peak counts or 0/1 values; ``None`` for its ``X``.
        categorical_covariate_keys
            Attribute columns to condition on (cell type, donor, batch...), in ``mdata.obs``
            or, with ``modalities["categorical_covariate_keys"]``, in that modality's ``obs``.
        modalities
            Which modality each argument refers to, as in scvi-tools' MULTIVI, e.g.
            ``{"rna_layer": "rna", "atac_layer": "atac", "categorical_covariate_keys": "rna"}``.
            Leave out ``"rna_layer"`` or ``"atac_layer"`` for a single-modality model.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).

        Examples
        --------
        >>> scvi_cfgen.CFGenModel.setup_mudata(
        ...     mdata,
        ...     categorical_covariate_keys=["cell_type"],
        ...     modalities={"rna_layer": "rna", "atac_layer": "atac"},
        ... )
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        adata_manager = build_mudata_manager(
            mdata,
            rna_layer,
            atac_layer,
            categorical_covariate_keys,
            modalities,
            setup_method_args,
        )
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    # ------------------------------------------------------------------ modalities
    @property
    def modality_names(self) -> dict[str, str] | None:
        """Modality names of a MuData model, e.g. ``{"rna": "rna", "atac": "atac"}``.

        Only registered modalities are listed; ``None`` for a model set up with
        :meth:`setup_anndata` (RNA only).
        """
        return registered_modalities(self.registry_)

    @property
    def has_rna(self) -> bool:
        """Whether the model has RNA counts (negative binomial)."""
        names = self.modality_names
        return names is None or RNA in names

    @property
    def has_atac(self) -> bool:
        """Whether the model has ATAC peaks (Bernoulli)."""
        names = self.modality_names
        return names is not None and ATAC in names

    def _require_rna(self, method: str) -> None:
        if not self.has_rna:
            raise ValueError(
                f"`{method}` works on RNA counts, and this model has no RNA modality "
                "(ATAC only). Use `generate` or `get_latent_representation`."
            )

    # ------------------------------------------------------------------ attributes
    @property
    def attribute_categories(self) -> dict[str, np.ndarray]:
        """Registered attributes and their training categories, in registry order."""
        state = self.registry_["field_registries"][CAT_COVS_KEY]["state_registry"]
        return {key: np.asarray(state["mappings"][key]) for key in state.get("field_keys", [])}

    def _attribute_index(self, name: str | None, argument: str) -> int:
        names = list(self.attribute_categories)
        if name not in names:
            raise ValueError(
                f"`{argument}`={name!r} is not a registered attribute; registered: {names}. "
                "Register it with `setup_anndata(..., categorical_covariate_keys=[...])`."
            )
        return names.index(name)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs_autoencoder: int | None = None,
        max_epochs_flow: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float = 0.9,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        batch_size: int = 256,
        early_stopping: bool = True,
        early_stopping_patience: int = 20,
        autoencoder_plan_kwargs: dict | None = None,
        flow_plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the count autoencoder, then the latent flow on the frozen encoder.

        Both stages run through scvi-tools' :class:`~scvi.train.TrainRunner` on the same
        train/validation split, so ``accelerator``, ``devices`` and Lightning strategies work as
        for any scvi-tools model. Size-factor laws and attribute frequencies are computed on the
        training cells only, before any training.

        Parameters
        ----------
        max_epochs_autoencoder
            Epochs of stage 1. Default: scvi-tools' heuristic, ``min(400, 400 * 20000 / n_cells)``.
        max_epochs_flow
            Epochs of stage 2. Default: enough epochs for about 10,000 optimiser steps, at most
            1,000 and at least 50 (early stopping usually ends it sooner).
        accelerator, devices
            Passed to Lightning (``"auto"`` uses a GPU when there is one).
        train_size, validation_size
            Fractions of cells for training and validation (validation defaults to the rest).
        shuffle_set_split
            Whether the split is random (otherwise sequential).
        batch_size
            Minibatch size of both stages (paper: 256).
        early_stopping
            Stop each stage when its validation loss has not improved for
            ``early_stopping_patience`` epochs (needs a validation set).
        early_stopping_patience
            Patience in epochs, for both stages.
        autoencoder_plan_kwargs, flow_plan_kwargs
            Keyword arguments of :class:`~scvi_cfgen.train.AutoencoderTrainingPlan` and
            :class:`~scvi_cfgen.train.FlowTrainingPlan` (e.g. ``lr``, ``weight_decay``).
        datasplitter_kwargs
            Keyword arguments of :class:`~scvi.dataloaders.DataSplitter`.
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer` for both stages.
        """
        if self.adata_manager is None:
            raise ValueError("This model has no registered AnnData; load it with `adata=...`.")
        if batch_size < 2:
            raise ValueError("`batch_size` must be at least 2 (BatchNorm needs two cells).")
        splitter = self._data_splitter_cls(
            self.adata_manager,
            train_size=train_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            batch_size=batch_size,
            drop_last=False,
            **(datasplitter_kwargs or {}),
        )
        splitter.setup()
        train_indices = np.asarray(splitter.train_idx)
        self._fit_data_statistics(train_indices)
        flow_plan_kwargs = dict(flow_plan_kwargs or {})
        if splitter.n_val == 0:
            warnings.warn(
                "No validation cells (train_size=1.0): early stopping and the flow's learning-rate"
                " schedule on validation loss are off.",
                UserWarning,
                stacklevel=2,
            )
            early_stopping = False
            flow_plan_kwargs.setdefault("reduce_lr_on_plateau", False)
        stopping = {
            "early_stopping": early_stopping,
            "early_stopping_monitor": "validation_loss",
            "early_stopping_patience": early_stopping_patience,
            "check_val_every_n_epoch": 1 if splitter.n_val > 0 else None,
        }
        stopping.update(trainer_kwargs)
        n_train = len(train_indices)
        if max_epochs_autoencoder is None:
            max_epochs_autoencoder = get_max_epochs_heuristic(n_train)
        if max_epochs_flow is None:
            steps_per_epoch = math.ceil(n_train / batch_size)
            max_epochs_flow = int(min(1000, max(50, math.ceil(10_000 / steps_per_epoch))))

        histories = {}
        logger.info("Stage 1/2: count autoencoder (%d epochs at most).", max_epochs_autoencoder)
        self._run_stage(
            self._autoencoder_plan_cls(self.module, **(autoencoder_plan_kwargs or {})),
            splitter,
            max_epochs_autoencoder,
            accelerator,
            devices,
            stopping,
        )
        histories["autoencoder"] = self.history_
        self._fit_latent_statistics(train_indices, batch_size)
        logger.info("Stage 2/2: latent flow (%d epochs at most).", max_epochs_flow)
        self._run_stage(
            self._flow_plan_cls(self.module, **flow_plan_kwargs),
            splitter,
            max_epochs_flow,
            accelerator,
            devices,
            stopping,
        )
        histories["flow"] = self.history_
        self.history_ = {
            f"{name}_{stage}": frame
            for stage, history in histories.items()
            for name, frame in (history or {}).items()
        }
        self.module.eval()
        self.is_trained_ = True

    def _run_stage(self, plan, splitter, max_epochs, accelerator, devices, trainer_kwargs) -> None:
        self.is_trained_ = False  # each stage keeps its own history
        self.history_ = None
        runner = self._train_runner_cls(
            self,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        runner()

    def _fit_data_statistics(self, train_indices: np.ndarray) -> None:
        """Attribute frequencies and size-factor laws of the training cells only."""
        manager = self.adata_manager
        if self.has_rna:
            libraries = row_sums(manager.get_from_registry(X_KEY))[train_indices]
        else:  # no RNA library: a placeholder the ATAC-only model never uses
            libraries = np.ones(len(train_indices))
        n_attributes = len(self.attribute_categories)
        if n_attributes:
            all_codes = np.asarray(manager.get_from_registry(CAT_COVS_KEY))[train_indices]
        else:
            all_codes = np.zeros((len(train_indices), 0))
        codes = torch.as_tensor(all_codes, dtype=torch.long).reshape(len(train_indices), -1)
        size_index = self.module.size_factor_attribute_index
        self.module.statistics.fit_attributes_and_sizes(
            codes,
            torch.log(torch.as_tensor(libraries)),
            None if size_index is None else codes[:, size_index],
        )

    @torch.inference_mode()
    def _fit_latent_statistics(self, train_indices: np.ndarray, batch_size: int) -> None:
        latent = self._encode(self.adata, train_indices, batch_size)
        self.module.statistics.fit_latent(latent.mean(dim=0), latent.std(dim=0))

    # ------------------------------------------------------------------ encoding
    @torch.inference_mode()
    def _encode(self, adata, indices, batch_size: int | None) -> torch.Tensor:
        self.module.eval()
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        latents = []
        for batch in loader:
            x, x_atac = (batch.get(key) for key in (X_KEY, ATAC_X_KEY))
            x, x_atac = (None if t is None else t.to(self.device) for t in (x, x_atac))
            latents.append(self.module.encode(x, x_atac).cpu())
        return torch.cat(latents)

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
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        return self._encode(adata, indices, batch_size).numpy()

    # ------------------------------------------------------------------ scVI drop-ins
    def _decoded_batches(self, adata, indices, batch_size, data_loader_kwargs=None):
        """Yield ``(tensors, NegativeBinomial)`` of observed cells, minibatch by minibatch."""
        self._check_if_trained(warn=False)
        self._require_rna("get_normalized_expression/posterior_predictive_sample")
        adata = self._validate_anndata(adata)
        self.module.eval()
        loader = self._make_data_loader(
            adata=adata, indices=indices, batch_size=batch_size, **(data_loader_kwargs or {})
        )
        for tensors in loader:
            _, generative_outputs = self.module.forward(tensors, compute_loss=False)
            yield tensors, generative_outputs["px"]

    def _rna_var_names(self, adata) -> pd.Index:
        """Gene names of ``adata`` (its RNA modality for a MuData model)."""
        if self.modality_names is None:
            return adata.var_names
        return adata[self.modality_names[RNA]].var_names

    def _gene_mask(self, adata, gene_list) -> np.ndarray | slice:
        if gene_list is None:
            return slice(None)
        names = self._rna_var_names(self._validate_anndata(adata))
        mask = np.asarray(names.isin(gene_list))
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
        mask = self._gene_mask(adata, gene_list)
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
        return pd.DataFrame(expression, index=cells, columns=self._rna_var_names(adata)[mask])

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
        mask = self._gene_mask(adata, gene_list)
        parts = []
        for _, px in self._decoded_batches(adata, indices, batch_size, data_loader_kwargs):
            draws = px.sample() if n_samples == 1 else px.sample((n_samples,)).permute(1, 2, 0)
            parts.append(sparse.GCXS.from_numpy(draws[:, mask].cpu().numpy()))
        return sparse.concatenate(parts, axis=0)

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(
        self,
        n_cells: int | None = None,
        conditions: Mapping[str, object] | pd.DataFrame | None = None,
        guidance_weights: float | Mapping[str, float] | None = None,
        library_size: float | Sequence[float] | np.ndarray | None = None,
        seed: int | None = None,
        batch_size: int = 1024,
        solver: SolverMethod = "dopri5",
        n_steps: int = 100,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        solver_backend: SolverBackend = "torchdiffeq",
        progress_bar: bool = True,
    ) -> ad.AnnData | md.MuData:
        """Generate new cells as raw counts, conditioned on any subset of the attributes.

        Noise is integrated through the guided velocity field to latents, which are decoded to
        a negative binomial (RNA) and a Bernoulli (ATAC) and sampled; this streams in chunks of
        ``batch_size`` cells.

        Parameters
        ----------
        n_cells
            Number of cells. Not needed when ``conditions`` is a DataFrame (one cell per row).
        conditions
            ``None``: attribute combinations are drawn at their training frequencies and every
            attribute is conditioned on. A dict ``{attribute: category}``: those attributes are
            fixed; the others are left out of the field. A DataFrame: one cell per row, columns
            are attributes (e.g. ``adata.obs[["cell_type"]]``).
        guidance_weights
            Weight of each conditioned attribute in the compositional guidance
            ``v = v_null + sum_i w_i (v_i - v_null)``: a number for all, or a dict per attribute.
            Default 1 (plain conditional generation); 0 drops an attribute (all 0: unconditional).
        library_size
            Total counts of the generated cells (scalar or one per cell). Default: drawn from the
            training log-normal law of the cell's ``size_factor_covariate`` category.
        seed
            Random seed; the same seed gives the same cells.
        batch_size
            Cells per chunk.
        solver
            ``"dopri5"`` (adaptive, the paper's) or fixed-step ``"euler"``, ``"midpoint"``,
            ``"rk4"``.
        n_steps
            Steps of a fixed-step solver.
        rtol, atol
            Tolerances of the adaptive solver.
        solver_backend
            ``"torchdiffeq"`` or ``"torchdyn"``.
        progress_bar
            Show a progress bar over chunks.

        Returns
        -------
        AnnData with sparse CSR integer counts, ``var`` = the training genes, and in ``obs`` the
        conditioned attributes (categorical, with the training categories) and the
        ``size_factor`` used. A model set up with :meth:`setup_mudata` returns a MuData with
        its registered modalities under their names: RNA as CSR ``int32`` counts, ATAC as CSR
        ``uint8`` 0/1 peaks (``var`` = the training peaks); the MuData's ``obs`` and each
        modality's ``obs`` hold the attributes (and, with RNA, the ``size_factor``). Either
        writes to ``.h5ad`` / ``.h5mu``.
        """
        self._check_if_trained(warn=False)
        solver_kwargs = solver_options(solver, n_steps, rtol, atol, solver_backend)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, got {batch_size}.")
        attributes = self.attribute_categories
        names = list(attributes)
        codes, n_cells = resolve_conditions(conditions, n_cells, attributes)
        given = (codes >= 0).any(axis=0)
        weights = resolve_weights(guidance_weights, given, attributes, conditions is not None)
        if library_size is not None:
            self._require_rna("library_size")
        libraries = self._check_library_size(library_size, n_cells)

        self.module.eval()
        device = self.device
        rng_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            codes_t = torch.as_tensor(codes, device=device)
            stats = self.module.statistics
            codes_t = stats.sample_missing_attributes(codes_t)
            weights_t = torch.as_tensor(weights, dtype=torch.float32, device=device).expand(
                n_cells, -1
            )
            if not self.has_rna:
                log_libraries = torch.zeros(n_cells, device=device)  # unused without RNA
            elif libraries is None:
                size_index = self.module.size_factor_attribute_index
                size_codes = None if size_index is None else codes_t[:, size_index]
                log_libraries = stats.sample_log_library(size_codes, n_cells)
            else:
                log_libraries = torch.log(torch.as_tensor(libraries, device=device).float())
            chunks = []
            starts = range(0, n_cells, batch_size)
            for start in track(
                starts,
                description="Generating cells",
                disable=not progress_bar or len(starts) < 2,
            ):
                chunk = slice(start, start + batch_size)
                chunks.append(
                    self._generate_chunk(
                        codes_t[chunk],
                        weights_t[chunk],
                        log_libraries[chunk],
                        solver_kwargs,
                    )
                )
        obs = pd.DataFrame(index=pd.Index([f"cfgen_{i}" for i in range(n_cells)]))
        conditioned = given if conditions is not None else weights > 0
        codes_np = codes_t.cpu().numpy()
        for k, name in enumerate(names):
            if conditioned[k]:
                obs[name] = pd.Categorical.from_codes(codes_np[:, k], categories=attributes[name])
        if self.has_rna:
            obs[SIZE_FACTOR_OBS_KEY] = np.exp(log_libraries.cpu().numpy())
        uns = {
            "cfgen": {
                "guidance_weights": {n: float(w) for n, w in zip(names, weights, strict=True)},
                "solver": solver,
                "seed": -1 if seed is None else int(seed),
            }
        }
        return self._assemble(chunks, obs, uns)

    def _generate_chunk(
        self, codes, weights, log_libraries, solver_kwargs
    ) -> dict[str, sp.csr_matrix]:
        module = self.module
        noise = torch.randn(codes.shape[0], module.n_latent, device=codes.device)
        size = module.size_factor_condition(log_libraries)
        z = module.sample_latent(noise, codes, weights, size, **solver_kwargs)
        return self._sample_sparse(z, log_libraries.exp(), module.dispersion_codes(codes))

    _OUTPUT_DTYPES = {RNA: np.int32, ATAC: np.uint8}

    def _sample_sparse(self, z, library, dispersion_codes) -> dict[str, sp.csr_matrix]:
        """Draw every modality for latents ``z`` as CSR matrices (int32 counts, uint8 0/1)."""
        drawn = self.module.sample_modalities(z, library, dispersion_codes)
        return {
            role: sp.csr_matrix(values.cpu().numpy().astype(self._OUTPUT_DTYPES[role]))
            for role, values in drawn.items()
        }

    def _assemble(
        self, chunks: list[dict[str, sp.csr_matrix]], obs: pd.DataFrame, uns: dict
    ) -> ad.AnnData | md.MuData:
        """Stack per-chunk matrices into the output AnnData (or MuData, for MuData models)."""
        var_names = {RNA: self.gene_names, ATAC: self.peak_names}
        matrices = {
            role: sp.vstack([chunk[role] for chunk in chunks], format="csr")
            if chunks
            else sp.csr_matrix((0, len(var_names[role])), dtype=self._OUTPUT_DTYPES[role])
            for role in self.module.modalities
        }
        return assemble_output(matrices, obs, var_names, self.modality_names, uns)

    @staticmethod
    def _check_library_size(library_size, n_cells: int) -> np.ndarray | None:
        if library_size is None:
            return None
        values = np.asarray(library_size, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(n_cells, float(values))
        if values.shape != (n_cells,):
            raise ValueError(
                f"`library_size` must be a number or have one value per cell ({n_cells}), "
                f"got shape {values.shape}."
            )
        if not np.all(np.isfinite(values)) or (values <= 0).any():
            raise ValueError("`library_size` values must be finite and positive.")
        return values

    @property
    def n_genes(self) -> int:
        """Number of genes the model generates (0 for an ATAC-only model)."""
        return int(self.module.n_input)

    @property
    def n_peaks(self) -> int:
        """Number of ATAC peaks the model generates (0 without ATAC)."""
        return int(self.module.n_input_atac)

    @property
    def peak_names(self) -> pd.Index:
        """Names of the ATAC peaks the model generates, in training order."""
        names = getattr(self, "peak_names_", None) or feature_names(self.registry_, ATAC_X_KEY)
        return pd.Index(names or np.arange(self.n_peaks).astype(str))

    @property
    def gene_names(self) -> pd.Index:
        """Names of the genes the model generates, in training order."""
        return pd.Index(getattr(self, "var_names_", None) or np.arange(self.n_genes).astype(str))
