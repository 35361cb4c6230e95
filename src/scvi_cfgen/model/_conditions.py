"""Turning user-facing conditions and guidance weights into per-cell codes and weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def _describe(values: Sequence) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(repr(v) for v in values[:20])
    return shown + (f", ... ({len(values)} in all)" if len(values) > 20 else "")


def _check_attribute(name: str, attributes: Mapping[str, np.ndarray]) -> None:
    if name not in attributes:
        known = _describe(list(attributes)) if attributes else "none (the model is unconditional)"
        raise ValueError(f"Unknown attribute {name!r}. The model was trained with: {known}.")


def encode_categories(name: str, values: Sequence, categories: np.ndarray) -> np.ndarray:
    """Codes of ``values`` among the training ``categories`` of attribute ``name``."""
    index = pd.Index([str(category) for category in categories])
    values = pd.Series(values, dtype=object)
    if values.isna().any():
        raise ValueError(f"Conditions for {name!r} contain missing values (NaN).")
    codes = index.get_indexer(values.astype(str))
    if (codes < 0).any():
        unknown = pd.unique(values[codes < 0])
        raise ValueError(
            f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} {_describe(unknown)} for "
            f"attribute {name!r}. Valid categories: {_describe(categories)}."
        )
    return codes


def resolve_conditions(
    conditions: Mapping | pd.DataFrame | None,
    n_cells: int | None,
    attributes: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, int]:
    """Per-cell codes ``(n_cells, n_attributes)``, ``-1`` where an attribute is not given."""
    names = list(attributes)
    if conditions is None:
        if n_cells is None:
            raise ValueError(
                "Give `n_cells`, or `conditions` as a DataFrame with one row per cell."
            )
        return np.full((_positive(n_cells), len(names)), -1, dtype=np.int64), int(n_cells)
    if isinstance(conditions, pd.DataFrame):
        if n_cells is not None and n_cells != len(conditions):
            raise ValueError(
                f"`n_cells`={n_cells} but `conditions` has {len(conditions)} rows; give one or "
                "the other (a DataFrame generates one cell per row)."
            )
        n_cells = _positive(len(conditions))
        columns = {str(column): conditions[column].to_numpy() for column in conditions.columns}
    elif isinstance(conditions, Mapping):
        if n_cells is None:
            raise ValueError(
                "`n_cells` is required when `conditions` is a dict of attribute values."
            )
        n_cells = _positive(n_cells)
        columns = {}
        for name, value in conditions.items():
            if not np.isscalar(value) and value is not None:
                raise ValueError(
                    f"`conditions[{name!r}]` must be a single category; for per-cell values pass "
                    "a DataFrame with one row per cell."
                )
            columns[str(name)] = [value] * n_cells
    else:
        raise ValueError(
            "`conditions` must be a dict {attribute: category} or a pandas DataFrame, "
            f"not {type(conditions).__name__}."
        )
    codes = np.full((n_cells, len(names)), -1, dtype=np.int64)
    for name, values in columns.items():
        _check_attribute(name, attributes)
        codes[:, names.index(name)] = encode_categories(name, values, attributes[name])
    return codes, n_cells


def resolve_weights(
    guidance_weights: float | Mapping[str, float] | None,
    given: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    conditions_given: bool,
) -> np.ndarray:
    """Per-attribute guidance weights ``(n_attributes,)``.

    Attributes named in the conditions get weight 1 unless told otherwise; attributes that are
    not conditioned on get weight 0. Without conditions, every attribute is conditioned on its
    sampled category (weight 1) unless ``guidance_weights`` says otherwise.
    """
    names = list(attributes)
    default = given.astype(np.float64) if conditions_given else np.ones(len(names))
    if guidance_weights is None:
        return default
    if isinstance(guidance_weights, Mapping):
        weights = default.copy()
        for name, weight in guidance_weights.items():
            _check_attribute(str(name), attributes)
            index = names.index(str(name))
            if conditions_given and not given[index]:
                raise ValueError(
                    f"A guidance weight is given for {name!r}, but `conditions` does not set "
                    f"{name!r}. Add it to `conditions` or drop its weight."
                )
            weights[index] = _check_weight(weight, str(name))
        return weights
    weight = _check_weight(guidance_weights, "all attributes")
    return np.where(default > 0, weight, 0.0)


def _check_weight(weight, name: str) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Guidance weight for {name} must be a number, got {weight!r}."
        ) from error
    if not np.isfinite(value) or value < 0:
        raise ValueError(
            f"Guidance weight for {name} must be finite and non-negative, got {weight!r} "
            "(0 = ignore the attribute, 1 = plain conditional generation, > 1 = stronger)."
        )
    return value


def _positive(n: int) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"`n_cells` must be a positive integer, got {n!r}.")
    return int(n)


def check_trained_categories(
    codes: np.ndarray, attributes: Mapping[str, np.ndarray], statistics
) -> None:
    """Raise a ``ValueError`` for requested categories without training cells.

    Their embeddings were never trained (an unused pandas category, or a category whose cells
    all fell in the validation split), so cells generated from them would be noise.
    """
    for k, (name, categories) in enumerate(attributes.items()):
        requested = np.unique(codes[:, k][codes[:, k] >= 0])
        if requested.size == 0:
            continue
        counts = statistics.category_counts(k, len(categories)).numpy()
        untrained = [str(categories[c]) for c in requested if counts[c] == 0]
        if untrained:
            trained = [str(c) for c, n in zip(categories, counts, strict=True) if n > 0]
            raise ValueError(
                f"No training cells had {name!r} = {_describe(untrained)}, so the model cannot "
                f"generate {'it' if len(untrained) == 1 else 'them'}. Categories with training "
                f"cells: {_describe(trained)}."
            )
