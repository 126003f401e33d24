"""Input checks shared by the metrics: one binary label and one or more score vectors."""

import numpy as np
from sklearn.utils import check_consistent_length, column_or_1d

__all__ = ["check_binary_scores", "check_probabilities"]


def positive_mask(y_true, pos_label):
    y_true = column_or_1d(y_true, dtype=None)
    if y_true.dtype.kind == "f" and np.isnan(y_true).any():
        raise ValueError("y_true holds a missing value (NaN)")
    if y_true.dtype == object and any(v is None or v != v for v in y_true):
        raise ValueError("y_true holds a missing value")
    classes = np.unique(y_true)
    if len(classes) > 2:
        raise ValueError(
            f"y_true must be binary, got {len(classes)} classes: {classes.tolist()[:10]}"
        )
    if pos_label is None:
        if not (classes.dtype.kind in "biuf" and set(classes.tolist()) <= {-1, 0, 1}):
            raise ValueError(
                f"y_true has labels {classes.tolist()}: pass pos_label to say which one is the "
                "positive class (it is only inferred for labels in {0, 1} or {-1, 1})"
            )
        pos_label = 1
    elif pos_label not in classes.tolist():
        raise ValueError(f"pos_label={pos_label!r} is not a label of y_true {classes.tolist()}")
    positive = y_true == pos_label
    if positive.all() or not positive.any():
        raise ValueError(
            f"y_true holds a single class ({classes.tolist()[0]!r}); ROC statistics need both "
            "positive and negative samples"
        )
    return positive


def check_binary_scores(y_true, *scores, pos_label=None, names=None):
    """Check a binary label and the scores given for it.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary labels.
    *scores : array-like of shape (n_samples,)
        Scores, higher meaning more likely positive.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.
    names : sequence of str, default=None
        Names of the scores in error messages (``"y_score"`` by default).

    Returns
    -------
    positive : ndarray of bool of shape (n_samples,)
        Whether each sample is positive.
    scores : list of ndarray of float
        The scores as float arrays.

    Raises
    ------
    ValueError
        If `y_true` is not binary or holds one class, if lengths differ, or if a score is missing
        (NaN) or infinite.
    """
    if names is None:
        names = ["y_score"] if len(scores) == 1 else [f"y_score[{i}]" for i in range(len(scores))]
    check_consistent_length(y_true, *scores)
    positive = positive_mask(y_true, pos_label)
    arrays = []
    for name, score in zip(names, scores, strict=True):
        score = column_or_1d(score, dtype=np.float64)
        if not np.isfinite(score).all():
            bad = int(np.flatnonzero(~np.isfinite(score))[0])
            raise ValueError(f"{name} holds a missing or infinite value (at position {bad})")
        arrays.append(score)
    return positive, arrays


def check_probabilities(y_prob, name="y_prob"):
    """Raise a ValueError unless every value of `y_prob` lies in [0, 1]."""
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.size and (y_prob.min() < 0 or y_prob.max() > 1):
        raise ValueError(
            f"{name} must hold predicted probabilities in [0, 1]; got values in "
            f"[{y_prob.min():g}, {y_prob.max():g}]"
        )
    return y_prob
