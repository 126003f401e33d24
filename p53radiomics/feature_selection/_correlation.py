"""CorrelationFilter: drop redundant features until no kept pair is correlated above a threshold."""

from numbers import Real

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils._sklearn import Interval, StrOptions, _fit_context

__all__ = ["CorrelationFilter"]


def _abs_correlation(X, method):
    """|correlation| between the columns of X; 0 where a column is constant (undefined)."""
    if method == "spearman":
        X = rankdata(
            X, axis=0
        )  # Spearman's rho is Pearson's r of the ranks (average ranks for ties)
    X = X - X.mean(axis=0)
    norms = np.sqrt((X * X).sum(axis=0))
    constant = norms <= 1e-12 * max(1.0, float(np.abs(X).max(initial=0.0)))
    norms[constant] = 1.0
    corr = (X.T @ X) / np.outer(norms, norms)
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    np.fill_diagonal(corr, 0.0)
    return np.abs(np.clip(corr, -1.0, 1.0))


class CorrelationFilter(SelectorMixin, BaseEstimator):
    """Drop features until no kept pair has an absolute correlation above a threshold.

    The study removed radiomics features whose Spearman correlation exceeded 0.9. This selector does
    it reproducibly, by a fixed rule for which feature of a correlated pair goes.

    Parameters
    ----------
    threshold : float, default=0.9
        Largest absolute correlation allowed between two kept features (a pair at exactly the
        threshold is kept).
    method : {"spearman", "pearson"}, default="spearman"
        Correlation coefficient. Spearman's is computed as Pearson's on average ranks.

    Attributes
    ----------
    support_ : ndarray of bool of shape (n_features,)
        Which features are kept.
    mean_abs_correlation_ : ndarray of shape (n_features,)
        Each feature's mean absolute correlation with all the other features, before any is dropped.
    drop_order_ : ndarray of int
        Indices of the dropped features, in the order they were dropped.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of str
        Names of the features seen during fit, when `X` has string column names.

    See Also
    --------
    LassoSelector : the next step of the study's radiomics branch.
    sklearn.feature_selection.VarianceThreshold : drops constant features.

    Notes
    -----
    The rule: while some pair of kept features has :math:`|\\rho| >` `threshold`, drop, among the
    features that belong to such a pair, the one with the largest mean absolute correlation with
    the other *kept* features (the most redundant one). A tie (the last two features of a group
    always tie) goes against the feature with the larger mean absolute correlation with *all* the
    features, and only then against the later column. So the kept set does not depend on the order
    of the columns except through exact ties of both means. A
    constant feature has no defined correlation; it counts as uncorrelated and is kept (remove it
    with :class:`~sklearn.feature_selection.VarianceThreshold` if unwanted).

    The rule costs :math:`O(p^2)` after the :math:`O(np^2)` correlation matrix: each drop updates
    the running sums instead of recomputing them.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.feature_selection import CorrelationFilter
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(2, 50))
    >>> X = np.c_[a, a + 0.01 * rng.normal(size=50), b]
    >>> CorrelationFilter(threshold=0.9).fit(X).get_support()
    array([ True, False,  True])
    """

    _parameter_constraints = {
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "method": [StrOptions({"spearman", "pearson"})],
    }

    def __init__(self, threshold=0.9, method="spearman"):
        self.threshold = threshold
        self.method = method

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Choose the features to keep.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric features.
        y : None
            Ignored.

        Returns
        -------
        self : CorrelationFilter
            The fitted selector.
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        corr = _abs_correlation(X, self.method)
        n = corr.shape[0]
        self.mean_abs_correlation_ = corr.sum(axis=1) / max(n - 1, 1)

        kept = np.ones(n, dtype=bool)
        sums = corr.sum(axis=1)  # running sum of |rho| with the other kept features
        above = corr > self.threshold
        conflicts = above.sum(axis=1)  # number of kept partners above the threshold
        order = []
        while True:
            candidates = np.flatnonzero(kept & (conflicts > 0))
            if candidates.size == 0:
                break
            scores = sums[candidates]
            # ties (up to rounding, which depends on the column order) are broken by the mean
            # |rho| with all the features, then against the later column
            tied = candidates[np.isclose(scores, scores.max(), rtol=1e-9, atol=1e-12)]
            initial = self.mean_abs_correlation_[tied]
            drop = tied[
                np.flatnonzero(np.isclose(initial, initial.max(), rtol=1e-9, atol=1e-12))[-1]
            ]
            kept[drop] = False
            order.append(drop)
            sums -= corr[:, drop]
            conflicts -= above[:, drop]
        self.support_ = kept
        self.drop_order_ = np.asarray(order, dtype=int)
        return self

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
