"""Calibration: the binned curve, calibration slope and intercept, and the Brier score."""

import warnings

import numpy as np
from scipy.special import logit
from scipy.stats import norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from sklearn.utils import Bunch

from ._checks import check_binary_scores, check_probabilities

__all__ = ["calibration_summary"]

# Probabilities of exactly 0 or 1 have an infinite logit; they are pulled this far inside (0, 1).
_EPS = 1e-15


def _logistic_recalibration(positive, lp, confidence):
    """Slope and intercept of the logistic recalibration model, with Wald intervals.

    The slope is the coefficient of ``y ~ 1 + lp``; the intercept (calibration-in-the-large) is
    that of ``y ~ 1`` with ``lp`` as offset. Both are binomial GLMs fitted by statsmodels.
    """
    import statsmodels.api as sm

    y = positive.astype(np.float64)
    z = norm.ppf(0.5 + confidence / 2)
    with warnings.catch_warnings():
        # A perfectly separating score gives an infinite slope; statsmodels warns and the estimate
        # is reported as it stands.
        warnings.simplefilter("ignore")
        slope_fit = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit()
        intercept_fit = sm.GLM(y, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit()
    slope, slope_se = float(slope_fit.params[1]), float(slope_fit.bse[1])
    intercept, intercept_se = float(intercept_fit.params[0]), float(intercept_fit.bse[0])
    return (
        slope,
        (slope - z * slope_se, slope + z * slope_se),
        intercept,
        (intercept - z * intercept_se, intercept + z * intercept_se),
    )


def calibration_summary(
    y_true, y_prob, *, n_bins=10, strategy="uniform", confidence=0.95, pos_label=None
):
    """Calibration curve, calibration slope and intercept, and Brier score of predicted risks.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary outcome.
    y_prob : array-like of shape (n_samples,)
        Predicted probabilities of the positive class, in [0, 1].
    n_bins : int, default=10
        Bins of the curve, see :func:`sklearn.calibration.calibration_curve`.
    strategy : {"uniform", "quantile"}, default="uniform"
        Bin edges: equal width, or equal numbers of samples.
    confidence : float, default=0.95
        Confidence level of the Wald intervals of slope and intercept.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.

    Returns
    -------
    summary : :class:`~sklearn.utils.Bunch`
        ``prob_true`` and ``prob_pred`` (the curve, from scikit-learn's ``calibration_curve``),
        ``slope`` and ``slope_ci``, ``intercept`` and ``intercept_ci``, ``brier`` (from
        :func:`sklearn.metrics.brier_score_loss`).

    Raises
    ------
    ValueError
        If `y_true` holds one class, lengths differ, or a probability is NaN or outside [0, 1].

    See Also
    --------
    p53radiomics.plotting.CalibrationDisplay : Plots the curve with these statistics.

    Notes
    -----
    With :math:`\\mathrm{lp} = \\mathrm{logit}(p)`, the calibration slope is :math:`b` in
    :math:`\\mathrm{logit}\\,P(y=1) = a + b\\,\\mathrm{lp}` and the calibration intercept is :math:`a`
    in :math:`\\mathrm{logit}\\,P(y=1) = a + \\mathrm{lp}` (slope fixed at 1). A well calibrated
    model has slope 1 and intercept 0; a slope below 1 means predictions too extreme (overfitting).
    Probabilities of exactly 0 or 1 are clipped to :math:`[10^{-15}, 1 - 10^{-15}]` first.

    References
    ----------
    .. [1] E. W. Steyerberg, "Clinical Prediction Models", 2nd ed., Springer, 2019, chapter 15.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.metrics import calibration_summary
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.05, 0.95, size=2000)
    >>> y = rng.uniform(size=2000) < p
    >>> summary = calibration_summary(y, p, n_bins=5)
    >>> summary.prob_pred.round(2)
    array([0.12, 0.3 , 0.5 , 0.7 , 0.87])
    >>> round(summary.slope, 1), round(summary.intercept, 1), round(summary.brier, 2)
    (1.0, 0.0, 0.18)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    positive, (prob,) = check_binary_scores(y_true, y_prob, pos_label=pos_label, names=["y_prob"])
    check_probabilities(prob)
    prob_true, prob_pred = calibration_curve(positive, prob, n_bins=n_bins, strategy=strategy)
    lp = logit(np.clip(prob, _EPS, 1 - _EPS))
    slope, slope_ci, intercept, intercept_ci = _logistic_recalibration(positive, lp, confidence)
    return Bunch(
        prob_true=prob_true,
        prob_pred=prob_pred,
        slope=slope,
        slope_ci=slope_ci,
        intercept=intercept,
        intercept_ci=intercept_ci,
        brier=float(brier_score_loss(positive, prob)),
    )
