"""scvi-tools' out-of-core data modules (``TileDBDataModule``...) adapted to CFGen's keys.

scvi-tools' custom data modules yield minibatches as dictionaries with counts under ``"X"`` and
category codes under ``"extra_categorical_covs"``, ``"batch"`` and ``"labels"``, coded with the
module's own encoders. ``TileDBDataModule`` codes several columns of one field jointly (the
``"//"``-joined values of ``categorical_covariate_keys`` are one code). This module is the one
place that knows those layouts: it describes each coded column group of a data module, builds a
CFGen registry from it, and turns each minibatch into ``{X_KEY: counts, CAT_COVS_KEY: codes}``
with one code per CFGen attribute, in the model's category order.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scvi
import torch
from lightning.pytorch import LightningDataModule

from scvi_cfgen._constants import CAT_COVS_KEY, X_KEY

#: Keys of scvi-tools' data-module minibatches that hold category codes.
_CODED_FIELDS = ("extra_categorical_covs", "batch", "labels")
#: How the data module calls the columns of each coded field.
_FIELD_COLUMNS = {
    "extra_categorical_covs": ("_categorical_covariate_keys",),
    "batch": ("batch_column_names", "_batch_key"),
    "labels": ("label_keys", "_label_key"),
}
#: The data module's encoder of each field (``TileDBDataModule``'s and ``AnnbatchDataModule``'s).
_FIELD_ENCODERS = {"batch": "batch_encoder", "labels": "label_encoder"}
#: The data module's separator of jointly coded columns, per field (``TileDBDataModule``).
_FIELD_SEPARATORS = {
    "extra_categorical_covs": "categ_cov_colsep",
    "batch": "batch_colsep",
    "labels": "labels_colsep",
}
_DEFAULT_SEPARATOR = "//"
#: TileDB's default memory budget of a read (``sm.mem.total_budget``, 10 GiB).
TILEDB_DEFAULT_READ_BUDGET = 10 * 2**30


@dataclass(frozen=True)
class CodedColumns:
    """One code column of a data-module minibatch: the obs columns it codes, and its classes.

    ``field`` is the minibatch key, ``position`` the code's column in that tensor, ``classes``
    the decoded value of each code: one obs value, or ``separator``-joined values of several
    ``columns`` (TileDB's joint coding).
    """

    field: str
    position: int
    columns: tuple[str, ...]
    classes: tuple[str, ...]
    separator: str

    def values(self) -> list[tuple[str, ...]]:
        """The obs values of each class, one per column; ``ValueError`` if they do not split."""
        if len(self.columns) == 1:
            return [(value,) for value in self.classes]
        split = [tuple(value.split(self.separator)) for value in self.classes]
        broken = [v for v, parts in zip(self.classes, split) if len(parts) != len(self.columns)]
        if broken:
            raise ValueError(
                f"The data module codes the columns {list(self.columns)} jointly, joined by "
                f"{self.separator!r}, and some values contain that separator: {broken[:5]}. "
                "Rename those categories in the SOMA obs, or give each column as its own "
                "categorical covariate of a data module that codes them one by one."
            )
        return split


def require_registry(datamodule) -> dict:
    """The data module's scvi-tools registry; ``ValueError`` if it has none."""
    registry = getattr(datamodule, "registry", None)
    if not isinstance(registry, dict) or "field_registries" not in registry:
        raise ValueError(
            f"The data module ({type(datamodule).__name__}) has no scvi-tools `registry`, so "
            "its genes and categories are unknown. Use one of scvi-tools' data modules "
            "(`scvi.dataloaders.TileDBDataModule`), or register an AnnData (backed .h5ad "
            "works) with `CFGenModel.setup_anndata`."
        )
    if not callable(getattr(datamodule, "on_before_batch_transfer", None)):
        raise ValueError(
            f"The data module ({type(datamodule).__name__}) has no `on_before_batch_transfer` "
            "to turn its minibatches into scvi-tools' dictionaries."
        )
    return registry


def coded_columns(datamodule=None, registry: dict | None = None) -> list[CodedColumns]:
    """Every code column of the data module's minibatches that CFGen can condition on.

    Categorical covariates are read from the registry (their classes are the encoder's); batch
    and label columns only from a data module object, whose encoders hold their classes (the
    registry's batch mapping is not in code order).
    """
    registry = registry if registry is not None else require_registry(datamodule)
    found = []
    state = registry["field_registries"].get("extra_categorical_covs", {}).get("state_registry")
    keys = list((state or {}).get("field_keys") or [])
    mapping = (state or {}).get("mapping") or {}
    separator = getattr(datamodule, _FIELD_SEPARATORS["extra_categorical_covs"], None)
    separator = separator or _DEFAULT_SEPARATOR
    if keys and len(mapping) == len(keys):  # one code per key
        for position, key in enumerate(keys):
            classes = tuple(str(c) for c in mapping[key])
            found.append(CodedColumns(CAT_COVS_KEY, position, (key,), classes, separator))
    elif keys and len(mapping) == 1:  # TileDB: all keys coded jointly in one column
        classes = tuple(str(c) for c in next(iter(mapping.values())))
        found.append(CodedColumns(CAT_COVS_KEY, 0, tuple(keys), classes, separator))
    elif keys:
        raise ValueError(
            f"The data module's registry codes the categorical covariates {keys} with "
            f"{len(mapping)} mappings; CFGen reads one per key or one joint mapping."
        )
    if datamodule is None:
        return found
    for field, encoder_name in _FIELD_ENCODERS.items():
        encoder = getattr(datamodule, encoder_name, None)
        named = (getattr(datamodule, name, None) for name in _FIELD_COLUMNS[field])
        columns = next((value for value in named if value), None)
        if encoder is None or columns is None or not hasattr(encoder, "classes_"):
            continue
        columns = (columns,) if isinstance(columns, str) else tuple(columns)
        separator = getattr(datamodule, _FIELD_SEPARATORS[field], None) or _DEFAULT_SEPARATOR
        classes = tuple(str(c) for c in encoder.classes_)
        found.append(CodedColumns(field, 0, columns, classes, separator))
    return found


def _column_categories(groups: list[CodedColumns]) -> dict[str, np.ndarray]:
    """Sorted categories of every obs column coded by ``groups``."""
    categories = {}
    for group in groups:
        values = group.values()
        for index, column in enumerate(group.columns):
            categories[column] = np.array(sorted({v[index] for v in values}), dtype=object)
    return categories


def _describe(groups: list[CodedColumns]) -> str:
    names = {field: [c for g in groups if g.field == field for c in g.columns] for field in
             _CODED_FIELDS}  # fmt: skip
    return (
        f"categorical_covariate_keys {names['extra_categorical_covs']}, batch columns "
        f"{names['batch']}, label columns {names['labels']}"
    )


def cfgen_registry(
    source: dict,
    groups: list[CodedColumns],
    attributes: Sequence[str] | None = None,
    gene_names: Sequence[str] | None = None,
) -> dict:
    """A CFGen registry (as ``setup_anndata`` writes it) for a data module's registry ``source``.

    ``attributes`` (default: the categorical covariates) must be coded columns of ``groups``.
    """
    categories = _column_categories(groups)
    if attributes is None:
        attributes = [c for g in groups if g.field == CAT_COVS_KEY for c in g.columns]
    if isinstance(attributes, str):
        raise ValueError("`attributes` must be a list of column names.")
    attributes = list(attributes)
    missing = [name for name in attributes if name not in categories]
    if missing:
        raise ValueError(
            f"Attributes {missing} are not coded by the data module ({_describe(groups)}). "
            "Build the data module with them in `categorical_covariate_keys`."
        )
    if len(set(attributes)) != len(attributes):
        raise ValueError(f"`attributes` has repeated names: {attributes}.")
    x_state = source["field_registries"]["X"]["state_registry"]
    n_vars, n_obs = int(x_state["n_vars"]), int(x_state["n_obs"])
    names = [str(n) for n in (x_state["column_names"] if gene_names is None else gene_names)]
    if len(names) != n_vars:
        raise ValueError(f"`gene_names` has {len(names)} names for the data's {n_vars} genes.")
    if len(set(names)) != n_vars:
        raise ValueError("`gene_names` must be unique.")
    mappings = {name: categories[name] for name in attributes}
    cat_covs = {
        "data_registry": {"attr_key": "_scvi_extra_categorical_covs", "attr_name": "obsm"}
        if attributes
        else {},
        "state_registry": {
            "mappings": mappings,
            "field_keys": attributes,
            "n_cats_per_key": [len(c) for c in mappings.values()],
        }
        if attributes
        else {},
        "summary_stats": {"n_extra_categorical_covs": len(attributes)},
    }
    return {
        "scvi_version": scvi.__version__,
        "model_name": "CFGenModel",
        "setup_args": {"layer": None, "categorical_covariate_keys": attributes or None},
        "field_registries": {
            X_KEY: {
                "data_registry": {"attr_name": "X", "attr_key": None},
                "state_registry": {
                    "n_obs": n_obs,
                    "n_vars": n_vars,
                    "column_names": np.array(names, dtype=object),
                },
                "summary_stats": {"n_vars": n_vars, "n_cells": n_obs},
            },
            CAT_COVS_KEY: cat_covs,
        },
        "setup_method_name": "setup_anndata",
    }


def model_registry(registry: dict) -> dict:
    """``registry`` as CFGen reads it: a data module's registry is converted, others kept.

    A data module's registry (``setup_method_name == "setup_datamodule"``) gives attributes =
    its categorical covariates and gene names = its ``X`` column names.
    """
    if registry.get("setup_method_name") != "setup_datamodule":
        return registry
    return cfgen_registry(registry, coded_columns(registry=registry))


def datamodule_registry(
    datamodule,
    attributes: Sequence[str] | None = None,
    gene_names: Sequence[str] | str | None = None,
) -> dict:
    """CFGen's registry for a data module; ``gene_names`` may name a column of a SOMA ``var``."""
    registry = require_registry(datamodule)
    if isinstance(gene_names, str):
        query = getattr(datamodule, "query", None)
        if query is None or not hasattr(query, "var"):
            raise ValueError(
                f"`gene_names={gene_names!r}` names a column of a SOMA query's `var`, and "
                f"{type(datamodule).__name__} has no `query`; pass the names as a list."
            )
        var = query.var().concat().to_pandas()
        if gene_names not in var.columns:
            raise ValueError(
                f"`gene_names={gene_names!r}` is not a column of the query's var; columns: "
                f"{list(var.columns)}."
            )
        in_x_order = var.set_index("soma_joinid").loc[np.asarray(query.var_joinids())]
        gene_names = in_x_order[gene_names].astype(str).tolist()
    return cfgen_registry(registry, coded_columns(datamodule), attributes, gene_names)


def warn_unbounded_soma_reads(datamodule) -> None:
    """Warn when a TileDB-SOMA data module reads with TileDB's default memory budget.

    A shuffled minibatch read asks for cells spread over the whole array, and with its default
    budget of 10 GiB TileDB may load most of the array's tiles for it: memory then grows with
    the experiment's size rather than the read's. A budget set on the experiment's context
    bounds it (``docs/scale.md``).
    """
    experiment = getattr(getattr(datamodule, "query", None), "experiment", None)
    config = getattr(getattr(experiment, "context", None), "tiledb_config", None) or {}
    try:
        budget = int(config.get("sm.mem.total_budget", TILEDB_DEFAULT_READ_BUDGET))
    except (TypeError, ValueError):
        return
    if experiment is not None and budget >= TILEDB_DEFAULT_READ_BUDGET:
        warnings.warn(
            "The SOMA experiment is read with TileDB's default memory budget "
            f"(sm.mem.total_budget = {budget / 2**30:.0f} GiB), which lets shuffled reads hold "
            "a share of the array that grows with its size (4.9 GB at the peak of training on "
            "a million cells x 2,000 genes). Open the experiment with a bounded budget: "
            "`tiledbsoma.Experiment.open(uri, context=tiledbsoma.SOMATileDBContext("
            'tiledb_config={"sm.mem.total_budget": str(2**27), '
            '"soma.init_buffer_bytes": str(2**25)}))`.',
            UserWarning,
            stacklevel=6,  # the user's train/train_autoencoder/train_flow call
        )


class DataModuleAdapter(LightningDataModule):
    """A Lightning data module that yields a scvi-tools data module's cells in CFGen's keys.

    Training runs on it as on the wrapped module (same loaders, same split); each minibatch is
    turned by the wrapped module's ``on_before_batch_transfer`` into scvi-tools' dictionary and
    then here into ``{X_KEY: counts, CAT_COVS_KEY: codes}`` with one code per model attribute.

    Parameters
    ----------
    datamodule
        A scvi-tools data module, e.g. :class:`scvi.dataloaders.TileDBDataModule`.
    attribute_categories
        The model's attributes and their categories, in the model's order.
    gene_names
        The model's genes; the data module must hold as many, in the same order.
    """

    def __init__(self, datamodule, attribute_categories: dict, gene_names: Sequence[str]):
        super().__init__()
        registry = require_registry(datamodule)
        self.datamodule = datamodule
        n_vars = int(registry["field_registries"]["X"]["state_registry"]["n_vars"])
        if n_vars != len(gene_names):
            raise ValueError(
                f"The data module holds {n_vars} genes and the model {len(gene_names)}; build "
                "the data module's query over the model's genes (`var_query`)."
            )
        groups = coded_columns(datamodule)
        self._lookups = self._code_lookups(groups, attribute_categories)
        warn_unbounded_soma_reads(datamodule)
        self.n_attributes = len(attribute_categories)
        # Set by the statistics pass over the training cells (``fit_streamed_data_statistics``).
        self.n_train: int | None = None
        self.n_train_batches: int | None = None
        self.batch_size: int | None = None

    @staticmethod
    def _code_lookups(groups, attribute_categories) -> list[tuple[str, int, list, torch.Tensor]]:
        """Per code column used: ``(field, position, attribute indices, class -> codes)``."""
        lookups, located = [], {}
        for group in groups:
            values = group.values()
            used = [(i, c) for i, c in enumerate(group.columns) if c in attribute_categories]
            if not used:
                continue
            table = torch.empty(len(values), len(used), dtype=torch.long)
            unknown = {}
            for column_index, (index, column) in enumerate(used):
                known = {str(c): code for code, c in enumerate(attribute_categories[column])}
                for row, value in enumerate(values):
                    code = known.get(value[index])
                    if code is None:
                        unknown.setdefault(column, set()).add(value[index])
                    table[row, column_index] = -1 if code is None else code
                located[column] = True
            if unknown:
                raise ValueError(
                    "The data module holds categories the model was not trained with: "
                    f"{ {k: sorted(v) for k, v in unknown.items()} }. Query only cells of the "
                    "model's categories (`obs_query`)."
                )
            indices = [list(attribute_categories).index(c) for _, c in used]
            lookups.append((group.field, group.position, indices, table))
        missing = [name for name in attribute_categories if name not in located]
        if missing:
            raise ValueError(
                f"The model conditions on {missing}, which the data module does not code "
                f"({_describe(groups)}). Build the data module with "
                f"`categorical_covariate_keys={list(attribute_categories)}`."
            )
        return lookups

    # ------------------------------------------------------------------ Lightning interface
    def setup(self, stage: str | None = None) -> None:
        """Set up the wrapped data module (its split and datasets)."""
        self.datamodule.setup(stage)

    def train_dataloader(self):
        """The wrapped module's training loader."""
        return self.datamodule.train_dataloader()

    def val_dataloader(self):
        """The wrapped module's validation loader (``[]`` without validation cells)."""
        loader = self.datamodule.val_dataloader()
        return [] if loader is None else loader

    def on_before_batch_transfer(self, batch, dataloader_idx: int) -> dict[str, torch.Tensor]:
        """The wrapped module's minibatch dictionary, in CFGen's keys and codes."""
        return self.cfgen_batch(self.datamodule.on_before_batch_transfer(batch, dataloader_idx))

    def cfgen_batch(self, tensors: dict) -> dict[str, torch.Tensor]:
        """``{X_KEY: counts, CAT_COVS_KEY: codes}`` from a scvi-tools minibatch dictionary."""
        counts = torch.as_tensor(tensors[X_KEY]).float()
        codes = torch.empty(counts.shape[0], self.n_attributes, dtype=torch.long)
        for field, position, indices, table in self._lookups:
            module_codes = torch.as_tensor(tensors[field]).long().reshape(counts.shape[0], -1)
            codes[:, indices] = table[module_codes[:, position]]
        return {X_KEY: counts, CAT_COVS_KEY: codes}

    # ------------------------------------------------------------------ streamed passes
    def has_validation(self) -> bool:
        """Whether the wrapped module has validation cells."""
        self._ensure_setup()
        loader = self.datamodule.val_dataloader()
        return loader is not None and not (isinstance(loader, list) and not loader)

    def split_size(self, split: str) -> int | None:
        """Cells of the ``"train"`` or ``"validation"`` split, if the module tells without a pass.

        Read from the SOMA query ids of ``TileDBDataModule``'s datasets, or from ``n_train`` /
        ``n_val`` where a module has them; ``None`` otherwise.
        """
        self._ensure_setup()
        if split == "validation" and not self.has_validation():
            return 0
        dataset_name, count_name = (
            ("train_dataset", "n_train") if split == "train" else ("val_dataset", "n_val")
        )
        ids = getattr(getattr(self.datamodule, dataset_name, None), "query_ids", None)
        if ids is not None and hasattr(ids, "obs_joinids"):
            return len(ids.obs_joinids)
        count = getattr(self.datamodule, count_name, None)
        return int(count) if isinstance(count, int | np.integer) else None

    def batches(self, split: str) -> Iterator[dict[str, torch.Tensor]]:
        """Minibatches of the ``"train"`` or ``"validation"`` cells, in CFGen's keys."""
        self._ensure_setup()
        if split == "validation" and not self.has_validation():
            return
        loader = (
            self.datamodule.train_dataloader()
            if split == "train"
            else self.datamodule.val_dataloader()
        )
        for batch in loader:
            yield self.on_before_batch_transfer(batch, 0)

    def _ensure_setup(self) -> None:
        if not getattr(self, "_set_up", False):
            self.datamodule.setup("fit")
            self._set_up = True
