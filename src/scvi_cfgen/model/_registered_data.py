"""What a model was registered with: modalities, attributes, features and finished stages."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scvi_cfgen._constants import ATAC, ATAC_X_KEY, CAT_COVS_KEY, RNA, X_KEY

from ._clusters import CLUSTER_KEY
from ._model_state import trained_stages
from ._multimodal import feature_names, registered_modalities


class RegisteredDataMixin:
    """Read-only views of the registry and the module sizes, shared by every model job."""

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

    # ------------------------------------------------------------------ attributes
    @property
    def attribute_categories(self) -> dict[str, np.ndarray]:
        """Attributes the flow is conditioned on and their categories.

        The registered attributes in registry order, then ``"cluster"`` once clusters are
        derived (``cluster_resolution``).
        """
        attributes = self._registered_attributes()
        if self.cluster_categories_ is not None:
            attributes[CLUSTER_KEY] = np.asarray(self.cluster_categories_)
        return attributes

    def _registered_attributes(self) -> dict[str, np.ndarray]:
        """Registered attributes and their training categories, in registry order."""
        state = self.registry_["field_registries"][CAT_COVS_KEY]["state_registry"]
        return {key: np.asarray(state["mappings"][key]) for key in state.get("field_keys", [])}

    def _attribute_index(self, name: str | None, argument: str) -> int:
        names = list(self._registered_attributes())
        if name not in names:
            raise ValueError(
                f"`{argument}`={name!r} is not a registered attribute; registered: {names}. "
                "Register it with `setup_anndata(..., categorical_covariate_keys=[...])`."
            )
        return names.index(name)

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

    @property
    def output_var_names(self) -> dict[str, pd.Index]:
        """Feature names of each generated modality: ``{"rna": genes, "atac": peaks}``."""
        names = {}
        if self.has_rna:
            names[RNA] = self.gene_names
        if self.has_atac:
            names[ATAC] = self.peak_names
        return names

    @property
    def trained_stages(self) -> list[str]:
        """Stages that finished training: ``[]``, ``["autoencoder"]`` or both.

        Generation and transfer need ``"flow"``; latents and scVI's drop-ins ``"autoencoder"``.
        """
        return trained_stages(self)

    # ------------------------------------------------------------------ feature names
    def _trained_feature_names(self, registry: dict | None = None) -> dict[str, list[str]]:
        """Feature names of each registered matrix, in training order (known ones only)."""
        registry = registry or self.registry_
        names = {}
        for key, stored in ((X_KEY, "var_names_"), (ATAC_X_KEY, "peak_names_")):
            found = (registry is self.registry_ and getattr(self, stored, None)) or (
                feature_names(registry, key)
            )
            if found:
                names[key] = found
        return names
