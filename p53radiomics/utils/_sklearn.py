"""The one module that reaches into scikit-learn's version differences and private helpers.

- ``_fit_context``, ``Interval`` and ``StrOptions``: the parameter validation of scikit-learn's own
  estimators (private modules, stable since 1.2), used by every estimator here;
- ``_check_feature_names_in``: the check of ``get_feature_names_out``'s `input_features` that
  scikit-learn's own transformers use;
- scikit-learn 1.8 replaced ``penalty="l1"`` of the logistic regressions by ``l1_ratio=1.0``; we support
  1.6 and newer, so the L1 logistic model is built here.

If a scikit-learn release moves them, this is the only file to change.
"""

import sklearn
from sklearn.base import _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in

__all__ = [
    "Interval",
    "StrOptions",
    "_check_feature_names_in",
    "_fit_context",
    "l1_logistic_regression",
]

_SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit())


def l1_logistic_regression(
    C=1.0, *, solver="liblinear", max_iter=1000, random_state=None, class_weight=None
):
    """An L1-penalised :class:`~sklearn.linear_model.LogisticRegression` (liblinear: binary; saga: any)."""
    if _SKLEARN_VERSION >= (1, 8):
        return LogisticRegression(
            C=C,
            l1_ratio=1.0,
            solver=solver,
            max_iter=max_iter,
            random_state=random_state,
            class_weight=class_weight,
        )
    return LogisticRegression(  # pragma: no cover - older scikit-learn
        C=C,
        penalty="l1",
        solver=solver,
        max_iter=max_iter,
        random_state=random_state,
        class_weight=class_weight,
    )
