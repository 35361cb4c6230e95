"""Aligning the genes (and peaks) of cells passed in to the model's training order, by name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import mudata as md
import numpy as np
import pandas as pd
import torch

from scvi_cfgen._constants import ATAC, ATAC_X_KEY, RNA, X_KEY

_FEATURE_KIND = {X_KEY: "genes", ATAC_X_KEY: "peaks"}
_ROLE = {X_KEY: RNA, ATAC_X_KEY: ATAC}


def _shown(names: Sequence[str], limit: int = 10) -> str:
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{names[:limit]}{more}"


def column_order(
    trained: Sequence[str], passed: pd.Index, kind: str = "genes", where: str = "the data"
) -> np.ndarray | None:
    """Positions in ``passed`` of each ``trained`` name; ``None`` when already in that order.

    Raises
    ------
    ValueError
        ``passed`` has duplicated names, lacks some trained names or has others: the message
        names them (at most ten of each) and says how to subset.
    """
    passed = pd.Index(passed).astype(str)
    trained = pd.Index(trained).astype(str)
    if len(passed) == len(trained) and passed.equals(trained):
        return None
    if passed.has_duplicates:
        duplicated = passed[passed.duplicated()].unique().tolist()
        raise ValueError(
            f"The {kind} of {where} have duplicated names {_shown(duplicated)}, so they cannot "
            "be matched to the model's by name. Make them unique, e.g. `adata.var_names_make_"
            "unique()`, keeping the names the model was trained with."
        )
    missing = trained.difference(passed, sort=False)
    extra = passed.difference(trained, sort=False)
    if len(missing) or len(extra):
        problems = []
        if len(missing):
            problems.append(f"lack {len(missing)} of the model's {kind}: {_shown(missing)}")
        if len(extra):
            problems.append(f"have {len(extra)} {kind} the model was not trained on: "
                            f"{_shown(extra)}")  # fmt: skip
        raise ValueError(
            f"The {kind} of {where} {' and '.join(problems)}. Pass exactly the training "
            f"{kind} (any order), e.g. `adata[:, model.gene_names]` for genes or "
            "`mdata.mod['atac'][:, model.peak_names]` for peaks."
        )
    return passed.get_indexer(trained)


def data_feature_names(data, registry_key: str, modality_names: Mapping[str, str] | None):
    """Feature names of the matrix registered under ``registry_key`` in an AnnData or MuData."""
    if modality_names is None:
        return data.var_names
    if not isinstance(data, md.MuData):
        raise ValueError(
            "This model was set up with a MuData: pass a MuData with the modalities "
            f"{sorted(modality_names.values())}."
        )
    name = modality_names[_ROLE[registry_key]]
    if name not in data.mod:
        raise ValueError(
            f"The MuData passed in has no modality {name!r} (it has {list(data.mod)})."
        )
    return data.mod[name].var_names


def feature_orders(
    trained: Mapping[str, Sequence[str]],
    data,
    modality_names: Mapping[str, str] | None,
    where: str,
) -> dict[str, np.ndarray]:
    """Column permutations, per registry key, that put ``data``'s features in training order.

    Keys already in training order are left out, so an empty dict means nothing to do.
    """
    orders = {}
    for key, names in trained.items():
        passed = data_feature_names(data, key, modality_names)
        order = column_order(names, passed, _FEATURE_KIND[key], where)
        if order is not None:
            orders[key] = order
    return orders


class AlignedLoader:
    """A data loader whose minibatches have their feature columns put in training order.

    Each minibatch's columns are permuted as it is loaded (``index_select``), so the matrix is
    never reordered or copied as a whole; it works the same for sparse, backed and MuData
    matrices.
    """

    def __init__(self, loader, orders: Mapping[str, np.ndarray]):
        self.loader = loader
        self.orders = {key: torch.as_tensor(order) for key, order in orders.items()}

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for tensors in self.loader:
            for key, order in self.orders.items():
                if key in tensors:
                    tensors[key] = tensors[key].index_select(1, order.to(tensors[key].device))
            yield tensors
