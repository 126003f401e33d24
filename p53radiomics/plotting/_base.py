"""What the displays share: axes, named scores, scores from fitted estimators.

matplotlib is imported inside the functions that draw, never when p53radiomics is imported.
"""

from collections.abc import Mapping

import numpy as np

__all__ = []


def get_axes(ax):
    """The axes to draw on and its figure; a new figure when `ax` is None."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax, ax.figure


def _named_scores(y_score, name, default="Classifier"):
    """Scores as a dict {name: array}: `y_score` is one score vector or a mapping of them."""
    if isinstance(y_score, Mapping):
        if not y_score:
            raise ValueError("y_score is an empty mapping; give at least one named score")
        if name is not None:
            raise ValueError(
                "name is taken from the keys when y_score is a mapping; leave name out"
            )
        return {str(key): value for key, value in y_score.items()}
    return {default if name is None else str(name): y_score}


def _one_or_list(values):
    """The single entry itself, else the list: scikit-learn's convention for per-curve
    artists (``line_``), used here for per-curve data as well."""
    return values[0] if len(values) == 1 else values


def _per_curve(value, n, what):
    """A display parameter as one entry per curve: a list gives one each, anything else is shared."""
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{what} has {len(value)} entries for {n} curves")
        return value
    return [value] * n


def _curve_kwargs(curve_kwargs, n):
    """Keyword arguments of each curve's ``plot`` call: one dict for all, or a list of n dicts."""
    if curve_kwargs is None:
        return [{} for _ in range(n)]
    if isinstance(curve_kwargs, Mapping):
        return [dict(curve_kwargs) for _ in range(n)]
    curve_kwargs = list(curve_kwargs)
    if len(curve_kwargs) != n:
        raise ValueError(f"curve_kwargs holds {len(curve_kwargs)} dicts for {n} curves")
    return [dict(kw or {}) for kw in curve_kwargs]


def _estimator_score(estimator, X, response_method, pos_label):
    """Scores of the positive class from a fitted binary classifier, and that class.

    ``response_method="auto"`` takes ``predict_proba`` and falls back on ``decision_function``.
    The positive class is ``pos_label``, by default the last of ``estimator.classes_``.
    """
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise ValueError(f"{type(estimator).__name__} is not a fitted classifier (no classes_)")
    classes = list(classes)
    if len(classes) != 2:
        raise ValueError(
            f"a binary classifier is needed; {type(estimator).__name__} has classes {classes}"
        )
    pos_label = classes[-1] if pos_label is None else pos_label
    if pos_label not in classes:
        raise ValueError(f"pos_label={pos_label!r} is not one of the classes {classes}")
    column = classes.index(pos_label)
    methods = (
        ["predict_proba", "decision_function"] if response_method == "auto" else [response_method]
    )
    for method in methods:
        if method not in ("predict_proba", "decision_function"):
            raise ValueError(
                f"response_method must be 'auto', 'predict_proba' or 'decision_function'; got {method!r}"
            )
        if hasattr(estimator, method):
            break
    else:
        raise ValueError(f"{type(estimator).__name__} has no {' or '.join(methods)}")
    if method == "predict_proba":
        return np.asarray(estimator.predict_proba(X))[:, column], pos_label
    score = np.asarray(estimator.decision_function(X)).ravel()
    return (score if column == 1 else -score), pos_label


def _estimator_scores(estimator, X, *, response_method, pos_label, name):
    """Scores of one fitted estimator, or of a mapping {name: estimator}, on the same X."""
    if isinstance(estimator, Mapping):
        named = _named_scores(estimator, name)
    else:
        named = {type(estimator).__name__ if name is None else str(name): estimator}
    scores, labels = {}, set()
    for key, est in named.items():
        scores[key], label = _estimator_score(est, X, response_method, pos_label)
        labels.add(label)
    if len(labels) > 1:
        raise ValueError(
            f"the estimators disagree on the positive class: {sorted(map(str, labels))}"
        )
    return scores, labels.pop()


def _finish_axes(ax, *, despine, legend_loc):
    if despine:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if any(not label.startswith("_") for label in ax.get_legend_handles_labels()[1]):
        ax.legend(loc=legend_loc)


class _ProbabilityDisplayMixin:
    """``from_estimator`` of the displays drawn from predicted probabilities."""

    @classmethod
    def from_estimator(cls, estimator, X, y, *, pos_label=None, name=None, **kwargs):
        """Compute and draw the display from fitted classifiers' predicted probabilities on data.

        Parameters
        ----------
        estimator : fitted classifier or mapping of str to fitted classifiers
            Binary classifiers with ``predict_proba``; a mapping draws one curve per entry.
        X : array-like or pandas.DataFrame
            Input of the classifiers.
        y : array-like of shape (n_samples,)
            True labels.
        pos_label : int, float, bool or str, default=None
            Positive class; by default the last of ``estimator.classes_``.
        name : str, default=None
            Legend name of a single estimator (its class name by default).
        **kwargs : dict
            Passed to ``from_predictions``.

        Returns
        -------
        display : object
            The display, drawn.

        Examples
        --------
        >>> from sklearn.datasets import make_classification
        >>> from sklearn.linear_model import LogisticRegression
        >>> from p53radiomics.plotting import CalibrationDisplay, DecisionCurveDisplay
        >>> X, y = make_classification(n_samples=200, random_state=0)
        >>> model = LogisticRegression().fit(X, y)
        >>> display = CalibrationDisplay.from_estimator(model, X, y, n_bins=5)
        >>> display.line_.get_label().startswith("LogisticRegression (slope")
        True
        >>> DecisionCurveDisplay.from_estimator({"LR": model}, X, y).line_.get_label()
        'LR'
        """
        probs, pos_label = _estimator_scores(
            estimator, X, response_method="predict_proba", pos_label=pos_label, name=name
        )
        return cls.from_predictions(y, probs, pos_label=pos_label, **kwargs)
