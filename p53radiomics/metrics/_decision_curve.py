"""Decision curve analysis: net benefit of a model, of treating everyone and of treating no one."""

import numpy as np
import pandas as pd
from sklearn.utils import column_or_1d

from ._checks import check_binary_scores, check_probabilities

__all__ = ["net_benefit"]


def _check_thresholds(thresholds):
    if thresholds is None:
        return np.arange(1, 100) / 100
    thresholds = column_or_1d(np.atleast_1d(thresholds), dtype=np.float64)
    if thresholds.size == 0:
        raise ValueError("thresholds must hold at least one threshold probability")
    if not np.isfinite(thresholds).all() or thresholds.min() < 0 or thresholds.max() >= 1:
        raise ValueError(
            f"thresholds must be threshold probabilities in [0, 1); got {thresholds.tolist()[:10]}"
        )
    return thresholds


def net_benefit(y_true, y_score, thresholds=None, *, harm=0.0, pos_label=None):
    """Net benefit of a risk model over threshold probabilities (a decision curve).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary outcome.
    y_score : array-like of shape (n_samples,)
        Predicted risks in [0, 1]; a patient is treated (called positive) when its risk is at
        least the threshold and not 0.
    thresholds : array-like of shape (n_thresholds,), default=None
        Threshold probabilities in [0, 1); ``None`` is 0.01, 0.02, ..., 0.99.
    harm : float, default=0.0
        Harm of the test itself, subtracted from the model's net benefit (as in ``dcurves``).
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.

    Returns
    -------
    table : pandas.DataFrame
        One row per threshold, columns ``threshold``, ``n``, ``prevalence``, ``test_pos_rate``,
        ``tp_rate``, ``fp_rate``, ``net_benefit`` (the model), ``treat_all`` and ``treat_none``.

    Raises
    ------
    ValueError
        If `y_true` holds one class, lengths differ, a score is NaN or outside [0, 1], or a
        threshold is outside [0, 1).

    See Also
    --------
    p53radiomics.plotting.DecisionCurveDisplay : Plots these curves.

    Notes
    -----
    At threshold :math:`p_t`, with :math:`N` patients, :math:`TP` and :math:`FP` those treated with
    and without the outcome:
    :math:`\\mathrm{NB} = TP/N - FP/N \\cdot p_t/(1-p_t) - \\mathrm{harm}`. Treating everyone gives
    :math:`\\pi - (1-\\pi)\\, p_t/(1-p_t)` for prevalence :math:`\\pi`; treating no one gives 0.
    The numbers equal those of ``dcurves.dca`` (Python) and ``dca`` (R).

    References
    ----------
    .. [1] A. J. Vickers, E. B. Elkin, "Decision curve analysis: a novel method for evaluating
       prediction models", Medical Decision Making 26(6), 565-574, 2006.

    Examples
    --------
    >>> from p53radiomics.metrics import net_benefit
    >>> y = [0, 0, 0, 1, 0, 1, 1, 0, 1, 1]
    >>> risk = [0.05, 0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.65, 0.8, 0.9]
    >>> net_benefit(y, risk, thresholds=[0.1, 0.5])[["threshold", "net_benefit", "treat_all"]]
       threshold  net_benefit  treat_all
    0        0.1     0.455556   0.444444
    1        0.5     0.300000   0.000000
    """
    positive, (score,) = check_binary_scores(y_true, y_score, pos_label=pos_label)
    check_probabilities(score, "y_score")
    thresholds = _check_thresholds(thresholds)
    n = len(score)
    # A risk of exactly 0 is never treated, not even at threshold 0 (as dcurves decides); moving
    # it below 0 keeps it under every threshold. The risks at or above each threshold are then
    # counted by binary search in the sorted risks.
    score = np.where(score == 0, -1.0, score)
    pos_sorted = np.sort(score[positive])
    neg_sorted = np.sort(score[~positive])
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = len(neg_sorted) - np.searchsorted(neg_sorted, thresholds, side="left")
    odds = thresholds / (1 - thresholds)
    prevalence = positive.mean()
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "n": n,
            "prevalence": prevalence,
            "test_pos_rate": (tp + fp) / n,
            "tp_rate": tp / n,
            "fp_rate": fp / n,
            "net_benefit": tp / n - fp / n * odds - harm,
            "treat_all": prevalence - (1 - prevalence) * odds,
            "treat_none": 0.0,
        }
    )
