"""Multimodal (RNA + ATAC) registration from MuData and multimodal outputs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scvi.data import AnnDataManager, fields

from scvi_cfgen._constants import ATAC, ATAC_X_KEY, CAT_COVS_KEY, RNA, X_KEY
from scvi_cfgen._validation import validate_counts

#: ``setup_mudata`` argument naming the layer of each modality, by modality role.
LAYER_ARGUMENTS = {RNA: "rna_layer", ATAC: "atac_layer"}


#: A numeric attribute column with more distinct values than this is refused as continuous.
MAX_NUMERIC_CATEGORIES = 50


def check_attribute_columns(obs: pd.DataFrame, keys: list[str], where: str) -> None:
    """Check attribute columns before registration.

    Raises a ``ValueError`` if a column is missing, has NaN, is duplicated, or is numeric with
    non-integer values or more than :data:`MAX_NUMERIC_CATEGORIES` distinct values (a
    continuous covariate, which would silently become one category per value). Warns, naming
    them, about categories of a categorical column that no cell has: they get an embedding that
    is never trained, and :meth:`~scvi_cfgen.CFGenModel.generate` refuses them.
    """
    for key in keys:
        if key not in obs:
            raise ValueError(
                f"Attribute column {key!r} not found in {where}; columns are {list(obs.columns)}."
            )
        column = obs[key]
        if column.isna().any():
            raise ValueError(
                f"{where}[{key!r}] has missing values; fill or drop those cells first."
            )
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy()
            n_distinct = column.nunique()
            if (values != np.round(values)).any() or n_distinct > MAX_NUMERIC_CATEGORIES:
                raise ValueError(
                    f"{where}[{key!r}] is numeric with {n_distinct} distinct values, so it looks "
                    "like a continuous covariate; CFGen conditions on categories only. If the "
                    f"values are labels, cast them: `{where}[{key!r}] = "
                    f"{where}[{key!r}].astype('category')`."
                )
        if isinstance(column.dtype, pd.CategoricalDtype):
            used = set(column.cat.codes.unique())
            unused = [c for i, c in enumerate(column.cat.categories) if i not in used]
            if unused:
                warnings.warn(
                    f"{where}[{key!r}] has categories without cells: {unused}. They are "
                    "registered but never trained, and generating them raises an error; drop "
                    f"them with `{where}[{key!r}].cat.remove_unused_categories()`.",
                    UserWarning,
                    stacklevel=4,
                )
    if len(set(keys)) != len(keys):
        raise ValueError(f"`categorical_covariate_keys` has duplicates: {keys}.")


def _resolve_modalities(mdata: md.MuData, modalities: Mapping[str, str] | None) -> dict:
    if modalities is None or not isinstance(modalities, Mapping):
        raise ValueError(
            "`modalities` must map setup arguments to modality names, e.g. "
            '`modalities={"rna_layer": "rna", "atac_layer": "atac"}`.'
        )
    known = {*LAYER_ARGUMENTS.values(), "categorical_covariate_keys"}
    extra = set(modalities) - known
    if extra:
        raise ValueError(
            f"Unknown `modalities` entries {sorted(extra)}; allowed: {sorted(known)}."
        )
    roles = {role: modalities.get(arg) for role, arg in LAYER_ARGUMENTS.items()}
    roles = {role: name for role, name in roles.items() if name is not None}
    if not roles:
        raise ValueError(
            "Name at least one data modality: `modalities={'rna_layer': ...}` for RNA counts "
            "and/or `modalities={'atac_layer': ...}` for ATAC peaks."
        )
    for role, name in roles.items():
        if name not in mdata.mod:
            raise ValueError(
                f"Modality {name!r} (given for {LAYER_ARGUMENTS[role]!r}) not found in the "
                f"MuData; its modalities are {list(mdata.mod)}."
            )
    cat_mod = modalities.get("categorical_covariate_keys")
    if cat_mod is not None and cat_mod not in mdata.mod:
        raise ValueError(
            f"Modality {cat_mod!r} (given for 'categorical_covariate_keys') not found in the "
            f"MuData; its modalities are {list(mdata.mod)}. Use None for `mdata.obs`."
        )
    return roles


def _check_paired_cells(mdata: md.MuData, roles: dict[str, str]) -> None:
    for name in roles.values():
        mod = mdata.mod[name]
        if mod.n_obs != mdata.n_obs or not mod.obs_names.equals(mdata.obs_names):
            raise ValueError(
                f"Modality {name!r} has {mod.n_obs} cells but the MuData has {mdata.n_obs}, or "
                "their cells or order differ: CFGen needs every cell measured in every "
                "registered modality. Keep the shared cells, e.g. `common = "
                "rna.obs_names.intersection(atac.obs_names)` and `mudata.MuData({'rna': "
                "rna[common], 'atac': atac[common]})`."
            )


def _layer_matrix(mod: ad.AnnData, layer: str | None, name: str, argument: str):
    if layer is not None and layer not in mod.layers:
        raise ValueError(
            f"Layer {layer!r} ({argument}) not found in modality {name!r}; available layers: "
            f"{list(mod.layers) or 'none'}. Use `{argument}=None` for its X."
        )
    matrix = mod.X if layer is None else mod.layers[layer]
    if matrix is None:
        raise ValueError(f"mdata.mod[{name!r}].X is empty; pass `{argument}` with the counts.")
    where = f"mdata.mod[{name!r}]" + (".X" if layer is None else f".layers[{layer!r}]")
    return matrix, where


def build_mudata_manager(
    mdata: md.MuData,
    rna_layer: str | None,
    atac_layer: str | None,
    categorical_covariate_keys: list[str] | None,
    modalities: Mapping[str, str] | None,
    setup_method_args: dict,
) -> AnnDataManager:
    """Validate a MuData and build the (unregistered) data manager of :meth:`setup_mudata`.

    RNA must hold raw counts (no empty cells); ATAC must hold non-negative integer peak counts or
    0/1 values (cells without accessible peaks are allowed): the model binarises them one
    minibatch at a time, so the matrix is never densified or copied.
    """
    if not isinstance(mdata, md.MuData):
        raise ValueError(
            f"`setup_mudata` needs a MuData, got {type(mdata).__name__}; use `setup_anndata` "
            "for an AnnData of RNA counts."
        )
    roles = _resolve_modalities(mdata, modalities)
    _check_paired_cells(mdata, roles)
    layers = {RNA: rna_layer, ATAC: atac_layer}
    for role, name in roles.items():
        argument = LAYER_ARGUMENTS[role]
        matrix, where = _layer_matrix(mdata.mod[name], layers[role], name, argument)
        validate_counts(matrix, where, argument, allow_empty_cells=role == ATAC)
    if isinstance(categorical_covariate_keys, str):
        raise ValueError("`categorical_covariate_keys` must be a list of column names.")
    keys = list(categorical_covariate_keys or [])
    cat_mod = modalities.get("categorical_covariate_keys")
    obs = mdata.obs if cat_mod is None else mdata.mod[cat_mod].obs
    where = "mdata.obs" if cat_mod is None else f"mdata.mod[{cat_mod!r}].obs"
    try:
        check_attribute_columns(obs, keys, where)
    except ValueError as error:
        if cat_mod is None and any(key not in obs for key in keys):
            raise ValueError(
                f"{error} If the attributes live in a modality's obs, say so with "
                "`modalities={'categorical_covariate_keys': 'rna'}` (or `mdata.pull_obs()`)."
            ) from None
        raise
    data_fields: list = [
        fields.MuDataCategoricalJointObsField(CAT_COVS_KEY, keys or None, mod_key=cat_mod)
    ]
    if RNA in roles:
        data_fields.append(
            fields.MuDataLayerField(
                X_KEY, rna_layer, mod_key=roles[RNA], is_count_data=True, mod_required=True
            )
        )
    if ATAC in roles:
        data_fields.append(
            fields.MuDataLayerField(
                ATAC_X_KEY, atac_layer, mod_key=roles[ATAC], is_count_data=True, mod_required=True
            )
        )
    return AnnDataManager(fields=data_fields, setup_method_args=setup_method_args)


def registered_modalities(registry: dict) -> dict[str, str] | None:
    """``{role: modality name}`` of a model set up with MuData; ``None`` for AnnData."""
    if registry.get("setup_method_name") != "setup_mudata":
        return None
    modalities = registry["setup_args"].get("modalities") or {}
    names = {role: modalities.get(arg) for role, arg in LAYER_ARGUMENTS.items()}
    return {role: name for role, name in names.items() if name is not None}


def feature_names(registry: dict, registry_key: str) -> list[str] | None:
    """Names of the features registered under ``registry_key`` (``None`` if unknown)."""
    field = registry["field_registries"].get(registry_key)
    if field is None:
        return None
    names = field.get("state_registry", {}).get("column_names")
    return None if names is None else [str(name) for name in names]


def assemble_output(
    matrices: Mapping[str, sp.csr_matrix],
    obs: pd.DataFrame,
    var_names: Mapping[str, pd.Index],
    modality_names: Mapping[str, str] | None,
    uns: dict,
) -> ad.AnnData | md.MuData:
    """An AnnData (model set up with AnnData) or a MuData with one AnnData per modality.

    In a MuData, every modality and the MuData itself carry ``obs`` (attributes, size factor);
    ``uns`` goes on the returned object.
    """
    if modality_names is None:
        output = ad.AnnData(X=matrices[RNA], obs=obs, var=pd.DataFrame(index=var_names[RNA]))
        output.uns.update(uns)
        return output
    mods = {
        modality_names[role]: ad.AnnData(
            X=matrix, obs=obs.copy(), var=pd.DataFrame(index=var_names[role])
        )
        for role, matrix in matrices.items()
    }
    output = md.MuData(mods)
    for column in obs.columns:
        output.obs[column] = obs[column]
    output.uns.update(uns)
    return output
