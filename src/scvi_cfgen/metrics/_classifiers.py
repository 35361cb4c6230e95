"""Classifier-based scores: label agreement of generated cells and two-sample tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier


def knn_f1(
    real_embedding: np.ndarray,
    real_labels: Sequence,
    generated_embedding: np.ndarray,
    generated_labels: Sequence,
    n_neighbors: int = 10,
) -> pd.Series:
    """F1 score per label of a k-NN classifier fitted on real cells and applied to generated ones.

    A generated cell counts as correct when the classifier, which has only seen real cells, gives
    it the label it was generated for.

    Returns
    -------
    Series indexed by the generated labels, plus ``"macro"``: their unweighted mean.
    """
    real_labels = np.asarray(real_labels, dtype=str)
    generated_labels = np.asarray(generated_labels, dtype=str)
    if len(real_labels) != len(real_embedding) or len(generated_labels) != len(
        generated_embedding
    ):
        raise ValueError("Each embedding needs exactly one label per cell.")
    neighbours = min(n_neighbors, len(real_labels))
    classifier = KNeighborsClassifier(n_neighbors=neighbours).fit(real_embedding, real_labels)
    predicted = classifier.predict(generated_embedding)
    labels = np.unique(generated_labels)
    scores = pd.Series(
        f1_score(generated_labels, predicted, labels=labels, average=None, zero_division=0),
        index=labels,
        dtype=float,
    )
    scores["macro"] = scores.mean()
    return scores


def c2st_auc(
    x: np.ndarray,
    y: np.ndarray,
    classifier: ClassifierMixin | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> float:
    """Classifier two-sample test: cross-validated ROC AUC of telling ``x`` from ``y``.

    Each cell's probability of belonging to ``y`` comes from a classifier that did not see it
    (stratified ``n_folds``-fold cross-validation); the AUC of those out-of-fold scores is
    returned. 0.5 means the sets cannot be told apart, 1.0 that they are perfectly separable.
    Compare sets of similar sizes.

    Parameters
    ----------
    x, y
        Cells x dimensions arrays in the same space.
    classifier
        Any scikit-learn classifier with ``predict_proba``. The default, a 10-nearest-neighbour
        classifier on distance-weighted votes, is non-parametric: it also notices differences in
        correlation structure, not only in means.
    n_folds
        Number of cross-validation folds (reduced when a set has fewer cells).
    seed
        Seed of the fold assignment.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    folds = min(n_folds, len(x), len(y))
    if folds < 2:
        raise ValueError(f"Need at least 2 cells in each set, got {len(x)} and {len(y)}.")
    if classifier is None:
        classifier = KNeighborsClassifier(n_neighbors=10, weights="distance")
    points = np.concatenate([x, y])
    origin = np.repeat([0, 1], [len(x), len(y)])
    scores = np.empty(len(points))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(points, origin):
        model = clone(classifier)
        if hasattr(model, "n_neighbors"):
            model.set_params(n_neighbors=min(model.n_neighbors, len(train)))
        model.fit(points[train], origin[train])
        scores[test] = model.predict_proba(points[test])[:, 1]
    return float(roc_auc_score(origin, scores))
