"""Registering an AnnData or MuData with CFGen (scvi-tools' ``setup_*`` class methods)."""

from __future__ import annotations

import anndata as ad
import mudata as md
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalJointObsField, LayerField
from scvi.utils import setup_anndata_dsp

from scvi_cfgen._constants import CAT_COVS_KEY, X_KEY
from scvi_cfgen._validation import validate_counts

from ._datamodule import datamodule_registry
from ._multimodal import build_mudata_manager, check_attribute_columns


class SetupMixin:
    """Adds :meth:`setup_anndata` and :meth:`setup_mudata` to the model."""

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
        validate_counts(
            matrix,
            "adata.X" if layer is None else f"adata.layers[{layer!r}]",
            cell_names=adata.obs_names,
        )
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

    @staticmethod
    def registry_from_datamodule(
        datamodule,
        attributes: list[str] | None = None,
        gene_names: list[str] | str | None = None,
    ) -> dict:
        """The registry of a model to train from a scvi-tools data module.

        Pass it as ``CFGenModel(adata=None, registry=...)``, then train with
        ``model.train(datamodule=datamodule)``. ``registry=datamodule.registry`` works too; this
        function also chooses the attributes among all the data module's coded columns and
        names the genes. Nothing is read but the data module's encoders (and, for
        ``gene_names`` given as a column name, the query's ``var``).

        Parameters
        ----------
        datamodule
            A scvi-tools data module with a ``registry``, e.g.
            :class:`scvi.dataloaders.TileDBDataModule`.
        attributes
            The ``obs`` columns to condition on, in order, each one CFGen attribute. Any column
            the data module codes: its ``categorical_covariate_keys`` (the default: all of
            them), ``batch_column_names`` or ``label_keys``. ``TileDBDataModule`` codes the
            columns of each of these jointly; their codes are split back into one per column.
        gene_names
            Names of the genes, in the data module's order; or, for a SOMA data module, the
            column of the query's ``var`` that holds them (e.g. ``"var_id"`` for experiments
            written by ``tiledbsoma.io.from_anndata``, ``"feature_name"`` in CELLxGENE Census).
            Default: the registry's (``soma_joinid`` numbers for ``TileDBDataModule``).

        Returns
        -------
        dict
            A registry like the one :meth:`setup_anndata` writes: a model built on it saves and
            loads like any CFGen model (and can be loaded with an AnnData of the same genes and
            attribute columns).

        Examples
        --------
        >>> datamodule = TileDBDataModule(
        ...     query,
        ...     layer_name="raw",
        ...     batch_size=256,
        ...     train_size=0.9,
        ...     batch_column_names=["donor"],
        ...     categorical_covariate_keys=["cell_type"],
        ... )
        >>> registry = CFGenModel.registry_from_datamodule(
        ...     datamodule, attributes=["cell_type", "donor"], gene_names="var_id"
        ... )
        >>> model = CFGenModel(adata=None, registry=registry)
        >>> model.train(datamodule=datamodule)
        """
        return datamodule_registry(datamodule, attributes, gene_names)
