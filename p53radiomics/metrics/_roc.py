"""ROC statistics: AUC with a confidence interval, DeLong's paired test, Youden's threshold.

The AUC is the Mann-Whitney statistic (ties count one half), equal to
:func:`sklearn.metrics.roc_auc_score`. Its variance and the covariance between AUCs of several
scores on the same patients follow DeLong, DeLong & Clarke-Pearson (1988), computed by the fast
algorithm of Sun & Xu (2014). Neither scikit-learn, SciPy nor statsmodels offers DeLong's variance,
which is why it is written here; it is checked against pROC's published values in the tests.
"""

import numbers

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_curve
from sklearn.utils import check_random_state

from ._checks import check_binary_scores

__all__ = ["delong_test", "roc_auc_ci", "youden_threshold"]


def _check_confidence(confidence):
    if not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}")


def _delong_placements(positive, scores):
    """AUCs and DeLong placement values of several scores, by the midrank algorithm of Sun & Xu.

    Parameters
    ----------
    positive : ndarray of bool of shape (n_samples,)
    scores : ndarray of shape (n_scores, n_samples)

    Returns
    -------
    auc : ndarray of shape (n_scores,)
    v10 : ndarray of shape (n_scores, n_positive)
        For each positive sample, the fraction of negatives scored below it (ties count 1/2).
    v01 : ndarray of shape (n_scores, n_negative)
        For each negative sample, the fraction of positives scored above it (ties count 1/2).
    """
    pos = scores[:, positive]
    neg = scores[:, ~positive]
    m, n = pos.shape[1], neg.shape[1]
    # Midranks within positives (tx), within negatives (ty) and over all samples (tz): Sun & Xu's
    # O(N log N) route to the placements, instead of comparing every positive with every negative.
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    # Rounding can put an AUC an ulp outside [0, 1]; the statistic itself never is.
    return np.clip(auc, 0.0, 1.0), v10, v01


def _delong_covariance(v10, v01):
    """DeLong covariance matrix of the AUCs from their placement values."""
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        raise ValueError(
            f"DeLong's variance needs at least 2 positive and 2 negative samples; got {m} and {n}"
        )
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return s10 / m + s01 / n


def _stratified_indices(positive, n_bootstraps, random_state):
    """Bootstrap samples drawn within each class, positives first: shape (n_bootstraps, n)."""
    rng = check_random_state(random_state)
    pos_idx = np.flatnonzero(positive)
    neg_idx = np.flatnonzero(~positive)
    draw_pos = pos_idx[rng.randint(0, len(pos_idx), size=(n_bootstraps, len(pos_idx)))]
    draw_neg = neg_idx[rng.randint(0, len(neg_idx), size=(n_bootstraps, len(neg_idx)))]
    return np.concatenate([draw_pos, draw_neg], axis=1), len(pos_idx)


def _bootstrap_aucs(positive, scores, n_bootstraps, random_state, chunk=256):
    """AUCs of each score on the same stratified bootstrap samples: shape (n_bootstraps, n_scores).

    Every sample keeps the numbers of positives and negatives (pROC's default), so each AUC is
    the rank-sum statistic of the resampled scores, computed for a chunk of samples at once.
    """
    indices, m = _stratified_indices(positive, n_bootstraps, random_state)
    n = indices.shape[1] - m
    out = np.empty((n_bootstraps, scores.shape[0]))
    for start in range(0, n_bootstraps, chunk):
        idx = indices[start : start + chunk]
        for k, score in enumerate(scores):
            ranks = rankdata(score[idx], axis=1)
            out[start : start + chunk, k] = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    return out


def _tpr_at_fpr(pos, neg, fpr_grid, chunk=256):
    """The ROC step curve's TPR at each false positive rate of `fpr_grid`, for several samples.

    `pos` (shape ``(n_samples, m)``) and `neg` (``(n_samples, n)``) are each sample's positive
    and negative scores; the result has shape ``(n_samples, len(fpr_grid))``. At a rate f, at
    most ``k`` negatives may score at or above the threshold, with ``k`` the largest count whose
    rate ``k / n`` (the float :func:`sklearn.metrics.roc_curve` computes) is ``<= f``. The lowest
    such threshold lies just above the ``(k + 1)``-th highest negative score ``v``, so the TPR is
    the share of positives scoring above ``v`` (every positive where ``k >= n``). This is
    ``roc_curve(..., drop_intermediate=False)`` read at ``fpr_grid``, without its per-sample
    overhead (tested against it).
    """
    m, n = pos.shape[1], neg.shape[1]
    k = np.searchsorted(np.arange(n + 1) / n, fpr_grid, side="right") - 1
    neg_desc = -np.sort(-neg, axis=1)
    out = np.ones((pos.shape[0], len(fpr_grid)))
    inside = k < n  # rates where fewer than every negative may be passed
    for start in range(0, pos.shape[0], chunk):
        v = neg_desc[start : start + chunk][:, k[inside]]  # (chunk, grid points)
        above = (pos[start : start + chunk, None, :] > v[:, :, None]).sum(axis=2)
        out[start : start + chunk, inside] = above / m
    return out


def roc_band(positive, score, fpr_grid, *, confidence, n_bootstraps, random_state):
    """Pointwise bootstrap band of the true positive rate at fixed false positive rates.

    Returns the TPR of the full sample and the lower and upper percentiles of the bootstrap TPRs,
    each of shape ``fpr_grid.shape``; the TPR at a false positive rate f is the highest TPR the
    curve reaches with FPR <= f (the ROC step curve, as pROC's ``ci.se``).
    """
    indices, m = _stratified_indices(positive, n_bootstraps, random_state)
    resampled = score[indices]  # positives first
    tprs = _tpr_at_fpr(resampled[:, :m], resampled[:, m:], fpr_grid)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(tprs, [alpha, 1 - alpha], axis=0)
    full = _tpr_at_fpr(score[positive][None, :], score[~positive][None, :], fpr_grid)[0]
    return full, low, high


def roc_auc_ci(
    y_true,
    y_score,
    confidence=0.95,
    method="delong",
    *,
    n_bootstraps=2000,
    random_state=None,
    pos_label=None,
):
    """Area under the ROC curve with its confidence interval.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary labels.
    y_score : array-like of shape (n_samples,)
        Scores, higher meaning more likely positive (probabilities or decision values).
    confidence : float, default=0.95
        Confidence level of the interval.
    method : {"delong", "bootstrap"}, default="delong"
        ``"delong"``: normal interval with DeLong's variance, computed by the fast algorithm of
        Sun & Xu; ``"bootstrap"``: percentile interval over `n_bootstraps` stratified bootstrap
        samples (each keeps the numbers of positives and negatives).
    n_bootstraps : int, default=2000
        Number of bootstrap samples (``method="bootstrap"`` only).
    random_state : int, RandomState instance or None, default=None
        Seed of the bootstrap (``method="bootstrap"`` only).
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.

    Returns
    -------
    auc : float
        Area under the ROC curve, equal to :func:`sklearn.metrics.roc_auc_score`.
    low, high : float
        Bounds of the interval, clipped to [0, 1].

    Raises
    ------
    ValueError
        If `y_true` holds one class, lengths differ, a score is NaN, or (DeLong) a class has fewer
        than two samples.

    See Also
    --------
    delong_test : Paired test between the AUCs of two scores.
    sklearn.metrics.roc_auc_score : The AUC alone.

    Notes
    -----
    With :math:`m` positives :math:`X_i` and :math:`n` negatives :math:`Y_j`, the placement values
    are :math:`V_{10}(X_i) = \\frac{1}{n}\\sum_j \\psi(X_i, Y_j)` and
    :math:`V_{01}(Y_j) = \\frac{1}{m}\\sum_i \\psi(X_i, Y_j)`, with :math:`\\psi = 1` when
    :math:`X > Y`, 1/2 on a tie and 0 otherwise. The AUC is their mean and its variance
    :math:`S_{10}/m + S_{01}/n`, the sample variances of the placements. Sun & Xu obtain all
    placements from midranks in :math:`O(N \\log N)`. The interval is
    :math:`\\mathrm{AUC} \\pm z_{(1+c)/2} \\sqrt{\\mathrm{Var}}`, as pROC's ``ci.auc``.

    References
    ----------
    .. [1] E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two or
       more correlated receiver operating characteristic curves: a nonparametric approach",
       Biometrics 44(3), 837-845, 1988.
    .. [2] X. Sun, W. Xu, "Fast implementation of DeLong's algorithm for comparing the areas under
       correlated receiver operating characteristic curves", IEEE Signal Processing Letters
       21(11), 1389-1393, 2014.
    .. [3] X. Robin et al., "pROC: an open-source package for R and S+ to analyze and compare ROC
       curves", BMC Bioinformatics 12, 77, 2011.

    Examples
    --------
    >>> from p53radiomics.metrics import roc_auc_ci
    >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> score = [0.1, 0.3, 0.35, 0.6, 0.4, 0.7, 0.8, 0.9]
    >>> auc, low, high = roc_auc_ci(y, score)
    >>> round(auc, 4), round(low, 4), round(high, 4)
    (0.9375, 0.7643, 1.0)
    >>> auc, low, high = roc_auc_ci(y, score, method="bootstrap", n_bootstraps=500, random_state=0)
    >>> bool(low <= auc <= high)
    True
    """
    _check_confidence(confidence)
    positive, (score,) = check_binary_scores(y_true, y_score, pos_label=pos_label)
    auc, v10, v01 = _delong_placements(positive, score[np.newaxis])
    auc = float(auc[0])
    alpha = (1 - confidence) / 2
    if method == "delong":
        sd = float(np.sqrt(_delong_covariance(v10, v01)[0, 0]))
        low, high = auc - norm.ppf(1 - alpha) * sd, auc + norm.ppf(1 - alpha) * sd
    elif method == "bootstrap":
        if not isinstance(n_bootstraps, numbers.Integral) or n_bootstraps < 1:
            raise ValueError(f"n_bootstraps must be a positive integer; got {n_bootstraps!r}")
        aucs = _bootstrap_aucs(positive, score[np.newaxis], n_bootstraps, random_state)[:, 0]
        low, high = np.quantile(aucs, [alpha, 1 - alpha])
    else:
        raise ValueError(f"method must be 'delong' or 'bootstrap'; got {method!r}")
    return auc, float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))


def delong_test(y_true, score_a, score_b, *, pos_label=None):
    """DeLong's paired two-sided test between the AUCs of two scores on the same samples.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary labels.
    score_a, score_b : array-like of shape (n_samples,)
        The two scores, higher meaning more likely positive.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.

    Returns
    -------
    z : float
        :math:`(\\mathrm{AUC}_a - \\mathrm{AUC}_b) / \\mathrm{sd}`; 0 when both scores rank the samples
        the same way, ±inf when the difference has no variance.
    p_value : float
        Two-sided p-value, :math:`2\\Phi(-|z|)`; 1 when the curves are identical.

    Raises
    ------
    ValueError
        If `y_true` holds one class or a class has fewer than two samples, lengths differ, or a
        score is NaN.

    See Also
    --------
    roc_auc_ci : AUC with its DeLong confidence interval.

    Notes
    -----
    The variance of the difference is :math:`\\mathrm{Var}(L_{10})/m + \\mathrm{Var}(L_{01})/n`,
    with :math:`L` the differences of the two scores' placement values (see :func:`roc_auc_ci`),
    which equals :math:`c^\\top S c` for :math:`c = (1, -1)` and DeLong's covariance matrix
    :math:`S`. This is pROC's ``roc.test(..., method="delong", paired=TRUE)``.

    References
    ----------
    .. [1] E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, Biometrics 44(3), 837-845, 1988.
    .. [2] X. Sun, W. Xu, IEEE Signal Processing Letters 21(11), 1389-1393, 2014.

    Examples
    --------
    >>> from p53radiomics.metrics import delong_test
    >>> y = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    >>> a = [0.1, 0.2, 0.3, 0.4, 0.6, 0.5, 0.7, 0.8, 0.9, 0.95]
    >>> b = [0.5, 0.1, 0.7, 0.2, 0.3, 0.4, 0.6, 0.9, 0.35, 0.8]
    >>> z, p = delong_test(y, a, b)
    >>> round(z, 3), round(p, 3)
    (0.97, 0.332)
    >>> delong_test(y, a, a)
    (0.0, 1.0)
    """
    positive, scores = check_binary_scores(
        y_true, score_a, score_b, pos_label=pos_label, names=["score_a", "score_b"]
    )
    auc, v10, v01 = _delong_placements(positive, np.vstack(scores))
    # Work on the differences of the placements directly, so that two scores that rank the samples
    # alike give exactly zero, not a rounding residue of c'Sc.
    l10 = (v10[0] - v10[1])[np.newaxis]
    l01 = (v01[0] - v01[1])[np.newaxis]
    var = float(_delong_covariance(l10, l01)[0, 0])
    diff = float(auc[0] - auc[1])
    if var <= 0:
        if diff == 0:
            return 0.0, 1.0
        return float(np.copysign(np.inf, diff)), 0.0
    z = diff / np.sqrt(var)
    return float(z), float(2 * norm.sf(abs(z)))


def youden_threshold(y_true, y_score, *, pos_label=None):
    """Score threshold that maximises Youden's J = sensitivity + specificity - 1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary labels.
    y_score : array-like of shape (n_samples,)
        Scores, higher meaning more likely positive.
    pos_label : int, float, bool or str, default=None
        Positive class; inferred only for labels in {0, 1} or {-1, 1}.

    Returns
    -------
    threshold : float
        One of the scores: a sample is called positive when ``y_score >= threshold``. Among
        thresholds with the same J, the highest (most specific) is returned.

    Raises
    ------
    ValueError
        If `y_true` holds one class, lengths differ, or a score is NaN.

    See Also
    --------
    diagnostic_table : Applies this threshold from a training cohort to the others.
    sklearn.metrics.roc_curve : The operating points searched.

    Notes
    -----
    pROC's ``coords(..., "best")`` reports the midpoint between this score and the next lower
    one; both give the same sensitivity and specificity on the cohort they were chosen on.

    Examples
    --------
    >>> from p53radiomics.metrics import youden_threshold
    >>> youden_threshold([0, 0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.7, 0.9])
    0.7
    """
    positive, (score,) = check_binary_scores(y_true, y_score, pos_label=pos_label)
    fpr, tpr, thresholds = roc_curve(positive, score, drop_intermediate=False)
    # J compared in whole numbers, (TP * n - FP * m) / (m * n), so that ties are exact ties and
    # not decided by rounding. The first point of roc_curve is the threshold +inf (nobody
    # positive): not a usable cut-off.
    m, n = positive.sum(), (~positive).sum()
    j = np.rint(tpr * m) * n - np.rint(fpr * n) * m
    return float(thresholds[1:][np.argmax(j[1:])])
