"""ComBatHarmonizer: ComBat batch (scanner) harmonisation, learnt on training data, applied to new data.

Written here rather than imported: neuroHarmonize, the library that learns ComBat's estimates on
one cohort and applies them to another, pins ``numpy<2``; combatlearn pulls seaborn, plotly and
umap-learn; neuroCombat (against which the tests check this one) only fits and corrects the same
data, so inside a pipeline it would correct each validation fold with estimates learnt on it.
"""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

from ..exceptions import CohortError, UnseenBatchWarning
from ..utils._sklearn import Interval, _check_feature_names_in, _fit_context

__all__ = ["ComBatHarmonizer", "adapt_to_new_batches"]


class ComBatHarmonizer(TransformerMixin, BaseEstimator):
    """Remove additive and multiplicative batch (scanner) effects from features with ComBat.

    ComBat (Johnson, Li & Rabinovic 2007) without covariates, as neuroCombat computes it: each
    feature is standardised by its grand mean and pooled within-batch variance; each batch's
    location and scale on that feature are estimated by empirical Bayes, shrunk towards priors
    shared by all the features of the batch; the batch's effect is then removed. The estimates are
    learnt by ``fit`` on training data and applied by ``transform`` to any data, so that inside a
    :class:`~sklearn.pipeline.Pipeline` a validation fold is never corrected with estimates learnt
    on it. The label is never used.

    Parameters
    ----------
    batch_column : str or int, default="scanner"
        Column of `X` holding each sample's batch: a column name for a
        :class:`~pandas.DataFrame`, a column position for an array. Every other column is a
        numeric feature.
    parametric : bool, default=True
        Parametric empirical Bayes (normal location, inverse-gamma scale priors, solved by
        iteration); ``False``: the non-parametric estimates, a likelihood-weighted average over
        the batch's other features (memory grows as the square of the number of features).
    mean_only : bool, default=False
        Correct the location only, leaving each batch's scale.
    eps : float, default=1e-8
        Floor of the variances, which keeps a feature constant within a batch from producing NaN or
        infinity: of each batch's variance of a standardised feature, of the spread of those
        variances over the features, and (relative to the feature's total variance) of the pooled
        variance. A feature constant over the whole training data is passed through unchanged.
    tol : float, default=1e-4
        Convergence of the parametric iteration: relative change of the estimates, measured as
        neuroCombat and sva's ComBat do.
    max_iter : int, default=1000
        Iterations of the parametric solution per batch; a :class:`~sklearn.exceptions.ConvergenceWarning`
        is issued if they are not enough.

    Attributes
    ----------
    batches_ : ndarray of shape (n_batches,)
        Batch values seen in ``fit``, sorted where they can be, then those added by
        :func:`adapt_to_new_batches`.
    batch_counts_ : ndarray of shape (n_batches,)
        Samples each batch's estimates were learnt from.
    grand_mean_ : ndarray of shape (n_features,)
        Mean of each feature over the training samples.
    var_pooled_ : ndarray of shape (n_features,)
        Pooled within-batch variance of each feature (1 for a constant feature).
    gamma_star_, delta_star_ : ndarray of shape (n_batches, n_features)
        Empirical-Bayes location and scale of each batch, in standardised units.
    gamma_pooled_, delta_pooled_ : ndarray of shape (n_features,)
        Their averages over the training batches weighted by their counts: the estimates applied
        to a batch unseen in ``fit`` (and not adapted to) or in `pooled_batches_`.
    pooled_batches_ : ndarray of shape (n_pooled_batches,)
        Batch values with a single sample in the training data: left out of the estimates and
        harmonised with the pooled ones (empty when every batch had two samples or more).
    adapted_batches_ : ndarray of shape (n_adapted_batches,)
        Batches unseen in ``fit`` given estimates by :func:`adapt_to_new_batches` (empty after
        ``fit``).
    n_features_in_ : int
        Columns of `X` seen in ``fit``, the batch column included.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Their names, where `X` had string column names.

    See Also
    --------
    adapt_to_new_batches : Learns the estimates of batches unseen in ``fit``.
    p53radiomics.pipeline.make_radiomics_branch : Uses it with ``harmonize=True``.

    Notes
    -----
    For feature :math:`g` of sample :math:`j` in batch :math:`i`, with grand mean
    :math:`\\alpha_g` and pooled variance :math:`\\sigma_g^2`, the standardised value is
    :math:`z_{ijg} = (x_{ijg} - \\alpha_g) / \\sigma_g` and the output
    :math:`\\sigma_g (z_{ijg} - \\gamma^*_{ig}) / \\sqrt{\\delta^*_{ig}} + \\alpha_g`, where
    :math:`\\gamma^*_{ig}` and :math:`\\delta^*_{ig}` are the empirical-Bayes location and scale.

    A batch unseen in ``fit`` gets the pooled estimates `gamma_pooled_` and `delta_pooled_`, and an
    :class:`~p53radiomics.exceptions.UnseenBatchWarning` names it: its own effect is not removed,
    but its samples are put on the same footing as the others. A batch with a single training
    sample has no variance to estimate: ``fit`` leaves it out of the estimates, warns, and it is
    harmonised with the pooled estimates too (`pooled_batches_`). That happens in nested
    cross-validation when a small scanner lands alone in a training fold; a scanner that has a
    single patient in the whole cohort is better merged with a similar one. ComBat's priors pool
    the features, so at least two must vary over the training data.

    References
    ----------
    .. [1] W. E. Johnson, C. Li and A. Rabinovic, "Adjusting batch effects in microarray expression
       data using empirical Bayes methods", Biostatistics 8(1):118-127, 2007.
    .. [2] J.-P. Fortin et al., "Harmonization of cortical thickness measurements across scanners
       and sites", NeuroImage 167:104-120, 2018 (neuroCombat).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from p53radiomics.harmonization import ComBatHarmonizer
    >>> rng = np.random.default_rng(0)
    >>> scanner = np.repeat(["A", "B"], 50)
    >>> X = pd.DataFrame(rng.normal(size=(100, 3)), columns=["f1", "f2", "f3"])
    >>> X[scanner == "B"] = X[scanner == "B"] * 3 + 5  # scanner B: scaled and shifted
    >>> X["scanner"] = scanner
    >>> combat = ComBatHarmonizer(batch_column="scanner").set_output(transform="pandas")
    >>> Xh = combat.fit_transform(X)
    >>> Xh.columns.tolist()
    ['f1', 'f2', 'f3']
    >>> def gap(F):  # largest difference between the scanners' means
    ...     return (F[scanner == "B"].mean() - F[scanner == "A"].mean()).abs().max()
    >>> print(f"{gap(X.drop(columns='scanner')):.1f} before, {gap(Xh):.1f} after")
    5.2 before, 0.3 after
    """

    _parameter_constraints = {
        "batch_column": [str, Integral],
        "parametric": ["boolean"],
        "mean_only": ["boolean"],
        "eps": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        batch_column="scanner",
        *,
        parametric=True,
        mean_only=False,
        eps=1e-8,
        tol=1e-4,
        max_iter=1000,
    ):
        self.batch_column = batch_column
        self.parametric = parametric
        self.mean_only = mean_only
        self.eps = eps
        self.tol = tol
        self.max_iter = max_iter

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the grand means, pooled variances and each batch's empirical-Bayes estimates.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            Numeric features and the batch column. No NaN: impute first.
        y : None
            Ignored (accepted for :class:`~sklearn.pipeline.Pipeline`).

        Returns
        -------
        self : object
            The fitted harmonizer.
        """
        validate_data(self, X, skip_check_array=True, reset=True)
        values, batch, ids, self._batch_index = self._split(X)
        if len(batch) < 2:
            raise ValueError(f"ComBat needs at least 2 samples, got {len(batch)}")
        levels = _levels(batch)
        codes = pd.Index(levels).get_indexer(batch)
        counts = np.bincount(codes, minlength=len(levels))
        # A batch with one training sample has no variance to estimate: harmonised with the pooled
        # estimates, as an unseen batch is (a small scanner often lands alone in a training fold).
        alone = counts < 2
        if alone.all():
            raise CohortError(
                "every batch has a single sample in the training data, so ComBat cannot estimate "
                "any batch's variance: merge similar batches",
                patient_id=ids[0],
                column=self.batch_column,
            )
        self.pooled_batches_ = levels[alone]
        if alone.any():
            first = ids[int(np.flatnonzero(alone[codes])[0])]
            warnings.warn(
                f"batch values {self.pooled_batches_.tolist()} of column {self.batch_column!r} "
                f"have a single sample in the training data (e.g. patient {first!r}): too few "
                "to estimate their effect, they are harmonised with the pooled estimates of the "
                "other batches",
                UnseenBatchWarning,
                stacklevel=3,
            )
            keep = ~alone[codes]
            values, batch, levels = values[keep], batch[keep], levels[~alone]
            codes = pd.Index(levels).get_indexer(batch)
            counts = counts[~alone]
        vary = (np.ptp(values, axis=0) > 0) & (values.var(axis=0) > 0)
        if vary.sum() < 2:
            raise ValueError(
                "ComBat's empirical-Bayes priors pool the features: at least 2 features must vary "
                f"over the training data, got {int(vary.sum())}"
            )
        onehot = (codes == np.arange(len(levels))[:, None]).astype(np.float64)  # (k, n)
        grand, var = values.mean(axis=0), np.ones(values.shape[1])
        v = values[:, vary]
        means = onehot @ v / counts[:, None]
        var[vary] = np.maximum(((v - means[codes]) ** 2).mean(axis=0), self.eps * v.var(axis=0))
        z = (v - grand[vary]) / np.sqrt(var[vary])
        gamma, delta = self._empirical_bayes(z, codes, onehot, counts, levels)
        self.batches_, self.batch_counts_ = levels, counts
        self.grand_mean_, self.var_pooled_ = grand, var
        self.gamma_star_ = np.zeros((len(levels), values.shape[1]))
        self.delta_star_ = np.ones((len(levels), values.shape[1]))
        self.gamma_star_[:, vary], self.delta_star_[:, vary] = gamma, delta
        self.gamma_pooled_ = counts @ self.gamma_star_ / counts.sum()
        self.delta_pooled_ = counts @ self.delta_star_ / counts.sum()
        self.adapted_batches_, self._varying = np.asarray([], dtype=object), vary
        return self

    def _empirical_bayes(self, z, codes, onehot, counts, levels):
        """gamma*, delta* of shape (n_batches, n_features) from standardised data `z` (n, F)."""
        gamma_hat = onehot @ z / counts[:, None]
        if self.mean_only:
            delta_hat = np.ones_like(gamma_hat)
        else:
            delta_hat = onehot @ (z - gamma_hat[codes]) ** 2 / (counts[:, None] - 1)
            delta_hat = np.maximum(delta_hat, self.eps)
        gamma_bar = gamma_hat.mean(axis=1, keepdims=True)
        t2 = gamma_hat.var(axis=1, ddof=1, keepdims=True)
        if not self.parametric:
            return self._non_parametric(z, codes, gamma_hat, delta_hat)
        if self.mean_only:
            return (t2 * gamma_hat + gamma_bar) / (t2 + 1), delta_hat
        m = delta_hat.mean(axis=1, keepdims=True)
        s2 = np.maximum(delta_hat.var(axis=1, ddof=1, keepdims=True), self.eps * m**2)
        a, b = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
        gamma, delta, slow = np.empty_like(gamma_hat), np.empty_like(delta_hat), []
        for i, n in enumerate(counts):
            zi, g_old, d_old = z[codes == i], gamma_hat[i], delta_hat[i]
            for _ in range(self.max_iter):
                g_new = (t2[i] * n * gamma_hat[i] + d_old * gamma_bar[i]) / (t2[i] * n + d_old)
                d_new = (0.5 * ((zi - g_new) ** 2).sum(axis=0) + b[i]) / (n / 2 + a[i] - 1)
                # the stopping rule of sva's ComBat and neuroCombat: relative change, signed
                change = max(_relative(g_new, g_old).max(), _relative(d_new, d_old).max())
                g_old, d_old = g_new, d_new
                if change <= self.tol:
                    break
            else:
                slow.append(levels[i])
            gamma[i], delta[i] = g_old, d_old
        if slow:
            warnings.warn(
                f"ComBat's estimates of batches {slow} did not converge in {self.max_iter} "
                "iterations; raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=4,
            )
        return gamma, delta

    @staticmethod
    def _non_parametric(z, codes, gamma_hat, delta_hat, chunk=512):
        """Each feature's estimates averaged over the batch's other features, weighted by the
        likelihood of its data under theirs (computed in the log domain, in row chunks)."""
        gamma, delta = np.empty_like(gamma_hat), np.empty_like(delta_hat)
        n_features = z.shape[1]
        for i in range(len(gamma_hat)):
            zi = z[codes == i]
            n, sum1, sum_sq = len(zi), zi.sum(axis=0), (zi**2).sum(axis=0)
            g, d = gamma_hat[i], delta_hat[i]
            for start in range(0, n_features, chunk):
                rows = slice(start, start + chunk)
                sum2 = sum_sq[rows, None] - 2 * sum1[rows, None] * g + n * g**2
                log_lh = -0.5 * n * np.log(2 * np.pi * d) - sum2 / (2 * d)
                idx = np.arange(start, min(start + chunk, n_features))
                log_lh[idx - start, idx] = -np.inf  # leave the feature itself out
                w = np.exp(log_lh - log_lh.max(axis=1, keepdims=True))
                w /= w.sum(axis=1, keepdims=True)
                gamma[i, rows], delta[i, rows] = w @ g, w @ d
        return gamma, delta

    def transform(self, X):
        """Harmonise `X` with the estimates learnt in ``fit``.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_samples, n_features)
            The columns seen in ``fit``, batch column included. A batch unseen in ``fit`` gets
            the pooled estimates, with an :class:`~p53radiomics.exceptions.UnseenBatchWarning`.

        Returns
        -------
        X_harmonized : ndarray of shape (n_samples, n_features - 1)
            The features without the batch column, in their input order.
        """
        check_is_fitted(self)
        values, batch, ids, _ = self._split(X)  # first: a missing batch column is named
        validate_data(self, X, skip_check_array=True, reset=False)
        idx = pd.Index(self.batches_).get_indexer(batch)  # -1: the pooled row below
        # batches with a single training sample were warned about in fit
        new = (idx < 0) & (pd.Index(self.pooled_batches_).get_indexer(batch) < 0)
        if new.any():
            unseen = pd.unique(batch[new]).tolist()
            warnings.warn(
                f"batch values {unseen} of column {self.batch_column!r} were not seen in fit "
                f"({int(new.sum())} samples, e.g. patient {ids[np.flatnonzero(new)[0]]!r}): "
                "harmonised with the pooled estimates of the training batches",
                UnseenBatchWarning,
                stacklevel=2,
            )
        gamma = np.vstack([self.gamma_star_, self.gamma_pooled_])[idx]
        delta = np.vstack([self.delta_star_, self.delta_pooled_])[idx]
        sd = np.sqrt(self.var_pooled_)
        z = (values - self.grand_mean_) / sd
        return (z - gamma) / np.sqrt(delta) * sd + self.grand_mean_

    def _split(self, X):
        """(features as float64, batch values, patient ids, batch column position) of `X`."""
        col = self.batch_column
        if isinstance(X, pd.DataFrame):
            if col not in X.columns:
                raise CohortError("the batch column is missing", column=col)
            position = X.columns.get_loc(col)
            if not isinstance(position, Integral):
                raise CohortError("the batch column name is repeated", column=col)
            ids, table, batch = X.index.tolist(), X.drop(columns=col), X[col].to_numpy(object)
        else:
            array = np.asarray(X)
            if array.ndim != 2:
                raise ValueError(f"X must be 2-dimensional, got shape {array.shape}")
            if isinstance(col, str) or not -array.shape[1] <= col < array.shape[1]:
                raise ValueError(
                    f"batch_column={col!r} must be a column position of the array X (shape "
                    f"{array.shape}); a column name needs a pandas DataFrame"
                )
            position = col % array.shape[1]
            ids, batch = list(range(len(array))), array[:, position].astype(object)
            kept = [j for j in range(array.shape[1]) if j != position]
            table = pd.DataFrame(array[:, kept], columns=kept)
        names = table.columns.tolist()
        for name, dtype in zip(names, table.dtypes, strict=True):
            if not pd.api.types.is_numeric_dtype(dtype):
                bad = ~table[name].map(lambda v: isinstance(v, Real)).to_numpy(bool)
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise CohortError(
                        f"{table[name].iloc[row]!r} is not a number; ComBat harmonises numeric "
                        "features only",
                        patient_id=ids[row],
                        column=name,
                    )
        values = table.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = pd.isna(batch)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise CohortError("no batch value", patient_id=ids[row], column=col)
        if not np.isfinite(values).all():
            row, j = np.argwhere(~np.isfinite(values))[0]
            raise CohortError(
                f"{values[row, j]} is not a finite number; ComBat needs every value (impute first)",
                patient_id=ids[row],
                column=names[j],
            )
        return values, batch, ids, position

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: the input columns without the batch column.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input column names, batch column included; by default `feature_names_in_`, else
            ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The input names without the batch column.
        """
        check_is_fitted(self, "n_features_in_")
        names = _check_feature_names_in(self, input_features)
        return np.delete(names, self._batch_index)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # the batch column may hold names
        return tags


def adapt_to_new_batches(harmonizer, X_new):
    """A copy of a fitted harmonizer that has also learnt the batches of `X_new`, without labels.

    Each batch of `X_new` (unseen in ``fit``) is standardised with the *training* `grand_mean_` and
    `var_pooled_`, and its empirical-Bayes location and scale estimated as ``fit`` estimates a
    training batch's (same priors and iteration, `parametric` and `mean_only` honoured): then
    ``transform`` maps it onto the training reference, not with the pooled estimates. No labels.

    Parameters
    ----------
    harmonizer : ComBatHarmonizer
        Fitted.
    X_new : pandas.DataFrame or array-like of shape (n_samples, n_features)
        The columns seen in ``fit``, batch column included; only batches without estimates (unseen
        in ``fit``, or in `pooled_batches_`), two samples each at least (the user guide says how
        many are enough). No NaN.

    Returns
    -------
    adapted : ComBatHarmonizer
        A deep copy whose `batches_`, `batch_counts_`, `gamma_star_`, `delta_star_` and
        `adapted_batches_` gain the new batches (which leave `pooled_batches_`); the rest unchanged.

    Raises
    ------
    CohortError
        (a :class:`ValueError`) naming the column, a patient and the batch values: a batch with
        estimates already (re-estimating a training batch on new data is not adapting), a batch
        with one sample (no variance to estimate: leave it out), a missing or non-finite value.

    Notes
    -----
    A harmonizer fitted on `X_new` alone centres it on its *own* grand mean, keeping any shift
    common to its batches. Adapting assumes each new batch's patients are like the training ones.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from p53radiomics.harmonization import ComBatHarmonizer, adapt_to_new_batches
    >>> rng = np.random.default_rng(0)
    >>> def site(scanners, shift=0.0, scale=1.0, n=40):
    ...     X = pd.DataFrame(rng.normal(size=(n * len(scanners), 3)), columns=["f1", "f2", "f3"])
    ...     return (X * scale + shift).assign(scanner=np.repeat(scanners, n))
    >>> combat = ComBatHarmonizer().set_output(transform="pandas").fit(site(["A", "B"]))
    >>> external = site(["C", "D"], shift=4.0, scale=2.0)  # two scanners unseen in fit
    >>> adapted = adapt_to_new_batches(combat, external)  # features only, never labels
    >>> adapted.batches_.tolist(), adapted.adapted_batches_.tolist()
    (['A', 'B', 'C', 'D'], ['C', 'D'])
    >>> print(f"largest mean {adapted.transform(external).mean().abs().max():.1f}")
    largest mean 0.2
    """
    if not isinstance(harmonizer, ComBatHarmonizer):
        raise TypeError(f"harmonizer must be a ComBatHarmonizer, got {type(harmonizer).__name__}")
    check_is_fitted(harmonizer)
    values, batch, ids, _ = harmonizer._split(X_new)  # first: a missing batch column is named
    validate_data(harmonizer, X_new, skip_check_array=True, reset=False)
    column, levels = harmonizer.batch_column, _levels(batch)
    codes = pd.Index(levels).get_indexer(batch)
    counts = np.bincount(codes, minlength=len(levels))
    seen = pd.Index(harmonizer.batches_).get_indexer(levels) >= 0
    for bad, why in (
        (seen, "have estimates already (fitted, or adapted to): adapting learns batches unseen "
               "in fit and never re-estimates a training batch on new data: leave them out"),
        (counts < 2, "have a single sample, too few to estimate their variance: leave them out "
                     "(transform harmonises them with the pooled estimates) or merge them"),
    ):  # fmt: skip
        if bad.any():
            raise CohortError(
                f"batch values {levels[bad].tolist()} {why}",
                patient_id=ids[int(np.flatnonzero(bad[codes])[0])],
                column=column,
            )
    vary = getattr(harmonizer, "_varying", None)  # the features with estimates (varied in fit)
    if vary is None:  # fitted by an earlier version: the others have gamma 0 and delta 1
        vary = ~((harmonizer.gamma_star_ == 0).all(0) & (harmonizer.delta_star_ == 1).all(0))
    z = (values[:, vary] - harmonizer.grand_mean_[vary]) / np.sqrt(harmonizer.var_pooled_[vary])
    onehot = (codes == np.arange(len(levels))[:, None]).astype(np.float64)
    gamma, delta = np.zeros((len(levels), vary.size)), np.ones((len(levels), vary.size))
    gamma[:, vary], delta[:, vary] = harmonizer._empirical_bayes(z, codes, onehot, counts, levels)
    adapted = copy.deepcopy(harmonizer)
    new = {"batches_": levels, "batch_counts_": counts, "gamma_star_": gamma, "delta_star_": delta}
    for name, rows in {**new, "adapted_batches_": levels}.items():  # appended after the others
        setattr(adapted, name, np.concatenate([getattr(adapted, name, levels[:0]), rows]))
    estimated = pd.Index(harmonizer.pooled_batches_).isin(levels)  # leave the pooled ones
    adapted.pooled_batches_ = harmonizer.pooled_batches_[~estimated]
    return adapted


def _levels(batch):
    """The distinct batch values, sorted where they can be (else in their order of appearance)."""
    levels = pd.unique(batch)
    try:
        return np.asarray(sorted(levels), dtype=object)
    except TypeError:  # batch values of mixed types
        return np.asarray(levels, dtype=object)


def _relative(new, old):
    """``|new - old| / old`` (signed, as sva's ComBat computes it), 0 where `old` is 0."""
    return np.divide(np.abs(new - old), old, out=np.zeros_like(new), where=old != 0)
