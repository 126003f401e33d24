"""The study's diagnostic tables (Tables 3-5): accuracy, AUC (95% CI), sensitivity, specificity."""

import numbers
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._checks import check_binary_scores
from ._roc import roc_auc_ci, youden_threshold

__all__ = ["diagnostic_table"]

_COLUMNS = [
    "model",
    "cohort",
    "n",
    "threshold",
    "accuracy",
    "auc",
    "auc_low",
    "auc_high",
    "auc_ci",
    "sensitivity",
    "specificity",
]


def _check_results(results):
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            "results must be a non-empty mapping {model name: {cohort name: (y_true, y_score)}}"
        )
    for model, cohorts in results.items():
        if not isinstance(cohorts, Mapping) or not cohorts:
            raise ValueError(
                f"results[{model!r}] must be a non-empty mapping {{cohort name: (y_true, y_score)}}"
            )
        for cohort, pair in cohorts.items():
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(f"results[{model!r}][{cohort!r}] must be a pair (y_true, y_score)")


def _threshold_for(model, threshold):
    if isinstance(threshold, Mapping):
        if model not in threshold:
            raise ValueError(f"threshold has no entry for model {model!r}")
        threshold = threshold[model]
    if threshold == "youden":
        return None
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool):
        return float(threshold)
    raise ValueError(
        f"threshold must be 'youden', a number or a mapping of them by model; got {threshold!r}"
    )


def diagnostic_table(
    results,
    threshold="youden",
    reference_cohort=None,
    *,
    confidence=0.95,
    method="delong",
    decimals=3,
    pos_label=None,
    **ci_params,
):
    """Accuracy, AUC with confidence interval, sensitivity and specificity of models on cohorts.

    One row per model and cohort, as the study's Tables 3-5. The threshold that turns a score into
    a call is chosen on a reference cohort (the training cohort) and applied unchanged to the
    others, so the validation rows are honest.

    Parameters
    ----------
    results : mapping of str to mapping of str to (y_true, y_score)
        ``{model name: {cohort name: (y_true, y_score)}}``, e.g.
        ``{"Clinical model": {"TC": (y_tc, s_tc), "VC": (y_vc, s_vc)}}``. Rows keep this order.
    threshold : "youden", float or mapping of str to either, default="youden"
        ``"youden"``: the score maximising Youden's J on the reference cohort
        (:func:`youden_threshold`); a number: that fixed cut-off (e.g. 0.5 on probabilities); a
        mapping: one of these per model name. A sample is positive when ``y_score >= threshold``.
    reference_cohort : str, default=None
        Cohort on which the Youden threshold is chosen; ``None`` takes each model's first cohort.
    confidence : float, default=0.95
        Confidence level of the AUC interval.
    method : {"delong", "bootstrap"}, default="delong"
        Interval method, see :func:`roc_auc_ci`.
    decimals : int, default=3
        Decimals of the formatted ``auc_ci`` column (the numeric columns are not rounded).
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.
    **ci_params : dict
        Passed on to :func:`roc_auc_ci` (``n_bootstraps``, ``random_state``).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``model``, ``cohort``, ``n``, ``threshold``, ``accuracy``, ``auc``, ``auc_low``,
        ``auc_high``, ``auc_ci`` (formatted as ``"0.716 (0.648–0.783)"``), ``sensitivity``,
        ``specificity``.

    Raises
    ------
    ValueError
        If `results` is not shaped as described, `reference_cohort` is missing from a model, or a
        cohort's labels or scores are invalid (see :func:`roc_auc_ci`).

    See Also
    --------
    roc_auc_ci : The AUC and its interval.
    youden_threshold : The default threshold.

    Examples
    --------
    >>> from p53radiomics.metrics import diagnostic_table
    >>> results = {
    ...     "clinical": {
    ...         "TC": ([0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.3, 0.8, 0.7]),
    ...         "VC": ([0, 0, 1, 1], [0.2, 0.75, 0.6, 0.9]),
    ...     },
    ... }
    >>> table = diagnostic_table(results)
    >>> table[["model", "cohort", "threshold", "accuracy", "sensitivity", "specificity"]]
          model cohort  threshold  accuracy  sensitivity  specificity
    0  clinical     TC        0.7  0.833333     0.666667          1.0
    1  clinical     VC        0.7  0.500000     0.500000          0.5
    >>> table["auc_ci"].tolist()
    ['0.778 (0.291–1.000)', '0.750 (0.057–1.000)']
    """
    _check_results(results)
    rows = []
    for model, cohorts in results.items():
        cut = _threshold_for(model, threshold)
        if cut is None:
            reference = next(iter(cohorts)) if reference_cohort is None else reference_cohort
            if reference not in cohorts:
                raise ValueError(
                    f"reference cohort {reference!r} is not among model {model!r}'s cohorts "
                    f"{list(cohorts)}"
                )
            y_ref, s_ref = cohorts[reference]
            cut = youden_threshold(y_ref, s_ref, pos_label=pos_label)
        for cohort, (y_true, y_score) in cohorts.items():
            positive, (score,) = check_binary_scores(y_true, y_score, pos_label=pos_label)
            auc, low, high = roc_auc_ci(
                positive, score, confidence, method, pos_label=True, **ci_params
            )
            called = score >= cut
            rows.append(
                {
                    "model": model,
                    "cohort": cohort,
                    "n": len(score),
                    "threshold": cut,
                    "accuracy": float(np.mean(called == positive)),
                    "auc": auc,
                    "auc_low": low,
                    "auc_high": high,
                    "auc_ci": f"{auc:.{decimals}f} ({low:.{decimals}f}–{high:.{decimals}f})",
                    "sensitivity": float(np.mean(called[positive])),
                    "specificity": float(np.mean(~called[~positive])),
                }
            )
    return pd.DataFrame(rows, columns=_COLUMNS)
