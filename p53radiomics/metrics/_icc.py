"""Intraclass correlation: the six Shrout-Fleiss / McGraw-Wong forms with their F test and CI.

Written here rather than taken from pingouin (the tests' oracle) because pingouin is not a runtime
dependency of the library, fixes the interval at 95% and rounds it to two decimals, goes through a
general ANOVA for every call (slow over thousands of features) and turns degenerate tables into
NaN or infinite values without a word. The mean squares, estimators, F tests and intervals are the
published ones (Shrout & Fleiss 1979; McGraw & Wong 1996), with F quantiles from SciPy.
"""

import numbers
from typing import NamedTuple

import numpy as np
import pandas as pd

# The F quantile and upper tail behind scipy.stats.f, without its per-call overhead (~0.3 ms, which
# would dominate an ICC per feature over thousands of features).
from scipy.special import fdtrc, fdtri

__all__ = ["ICC_KINDS", "ICCResult", "icc"]

#: The accepted values of ``kind``, with pingouin's and McGraw & Wong's names.
ICC_KINDS = {
    "ICC1": "ICC(1,1): one-way random, single measures",
    "ICC2": "ICC(A,1): two-way random, absolute agreement, single measures",
    "ICC3": "ICC(C,1): two-way mixed, consistency, single measures",
    "ICC1k": "ICC(1,k): one-way random, average measures",
    "ICC2k": "ICC(A,k): two-way random, absolute agreement, average measures",
    "ICC3k": "ICC(C,k): two-way mixed, consistency, average measures",
}

# Sums of squares below this share of the total are rounding noise around an exact zero (e.g. the
# between-target sum of a table whose row means are equal in exact arithmetic).
_ZERO_SHARE = 1e-12


class ICCResult(NamedTuple):
    """Result of :func:`icc`.

    Attributes
    ----------
    icc : float
        The intraclass correlation.
    ci_low, ci_high : float
        Bounds of its confidence interval.
    F : float
        F statistic of the test that the ICC is zero (``inf`` when the raters agree exactly).
    p_value : float
        One-sided p-value of that test.
    """

    icc: float
    ci_low: float
    ci_high: float
    F: float
    p_value: float


def _check_wide(table):
    """A targets x raters table as a float array, with labels for the error messages."""
    if isinstance(table, pd.DataFrame):
        targets, raters = list(table.index), list(table.columns)
        non_numeric = [c for c in table.columns if table[c].dtype.kind not in "biuf"]
        if non_numeric:
            raise TypeError(
                f"ratings must be numeric; column {non_numeric[0]!r} has dtype "
                f"{table[non_numeric[0]].dtype} (for a long-format table pass targets=, raters= "
                "and ratings_column=)"
            )
        values = table.to_numpy(dtype=np.float64)
    else:
        try:
            values = np.asarray(table, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"ratings must be a numeric targets x raters array: {err}") from None
        if values.ndim != 2:
            raise ValueError(
                f"ratings must be a 2D targets x raters array; got {values.ndim} dimension(s)"
            )
        targets, raters = list(range(values.shape[0])), list(range(values.shape[1]))
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        i, j = bad[0]
        raise ValueError(
            f"target {targets[i]!r}, rater {raters[j]!r}: rating {values[i, j]} is not finite "
            f"({len(bad)} non-finite rating(s) in all); the ICC needs every cell"
        )
    return values, targets, raters


def _check_long(data, targets, raters, ratings_column):
    """Pivot a long-format table (one row per target and rater) into a targets x raters array."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            "targets=, raters= and ratings_column= name columns of a long-format DataFrame; "
            f"got ratings of type {type(data).__name__}"
        )
    names = {"targets": targets, "raters": raters, "ratings_column": ratings_column}
    if any(v is None for v in names.values()):
        raise TypeError(
            f"a long-format table needs all of targets=, raters=, ratings_column=: {names}"
        )
    missing = [v for v in names.values() if v not in data.columns]
    if missing:
        raise ValueError(
            f"column(s) {missing} not in the table, whose columns are {list(data.columns)}"
        )
    if data[ratings_column].dtype.kind not in "biuf":
        raise TypeError(
            f"column {ratings_column!r} must hold numeric ratings; dtype {data[ratings_column].dtype}"
        )
    for column in (targets, raters):
        if data[column].isna().any():
            row = data.index[data[column].isna().to_numpy()][0]
            raise ValueError(f"row {row!r}: column {column!r} is missing (NaN)")
    values = data[ratings_column].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = data.iloc[bad[0]]
        raise ValueError(
            f"target {row[targets]!r}, rater {row[raters]!r}: rating {values[bad[0]]} in column "
            f"{ratings_column!r} is not finite ({len(bad)} non-finite rating(s) in all)"
        )
    duplicated = data.duplicated([targets, raters])
    if duplicated.any():
        row = data[duplicated.to_numpy()].iloc[0]
        raise ValueError(
            f"target {row[targets]!r}, rater {row[raters]!r}: rated more than once (one row per "
            "target and rater)"
        )
    wide = data.pivot(index=targets, columns=raters, values=ratings_column)
    counts = wide.notna().sum(axis=0)
    if wide.shape[0] >= 2:
        single = counts[counts == 1]
        if len(single):
            rater = single.index[0]
            target = wide.index[wide[rater].notna().to_numpy()][0]
            raise ValueError(
                f"rater {rater!r} rated a single target ({target!r}) of {wide.shape[0]}; the ICC "
                "needs every rater to rate every target"
            )
    holes = np.argwhere(wide.isna().to_numpy())
    if len(holes):
        i, j = holes[0]
        raise ValueError(
            f"target {wide.index[i]!r}, rater {wide.columns[j]!r}: no rating ({len(holes)} missing "
            "cell(s) in all); the ICC needs every rater to rate every target"
        )
    return wide.to_numpy(dtype=np.float64), list(wide.index), list(wide.columns)


def _mean_squares(x):
    """Two-way ANOVA of a complete table: MSR (targets), MSC (raters), MSE (residual), MSW."""
    n, k = x.shape
    grand = x.mean()
    row = x.mean(axis=1)
    col = x.mean(axis=0)
    ss_total = float(((x - grand) ** 2).sum())
    ss_rows = k * float(((row - grand) ** 2).sum())
    ss_cols = n * float(((col - grand) ** 2).sum())
    # The residual directly, not SST - SSR - SSC, which cancels to noise on near-perfect agreement.
    ss_error = float(((x - row[:, None] - col[None, :] + grand) ** 2).sum())
    tiny = _ZERO_SHARE * ss_total
    ss_rows, ss_cols, ss_error = (0.0 if s <= tiny else s for s in (ss_rows, ss_cols, ss_error))
    return (
        ss_rows / (n - 1),
        ss_cols / (k - 1),
        ss_error / ((n - 1) * (k - 1)),
        (ss_cols + ss_error) / (n * (k - 1)),
    )


def _ratio(num, den):
    """``num / den`` for a mean-square ratio, ``inf`` when only the denominator is zero."""
    return np.inf if den == 0 else num / den


def _consistency_bounds(F, df1, df2, k, q, average):
    """CI of ICC1/ICC3 (and their k forms) from the F statistic (Shrout & Fleiss, eq. 6 and 13)."""
    f_low = F / fdtri(df1, df2, q)
    f_high = F * fdtri(df2, df1, q)
    if average:
        return tuple(1.0 - 1.0 / v for v in (f_low, f_high))
    # 1 - k / (F' + k - 1) is (F' - 1) / (F' + k - 1), also right when F' is infinite.
    return tuple(1.0 - k / (v + k - 1) for v in (f_low, f_high))


def _agreement_bounds(rho, msr, msc, mse, n, k, q, average):
    """CI of ICC2 (and ICC2k): Satterthwaite's degrees of freedom (McGraw & Wong, Table 7)."""
    # Satterthwaite's v with McGraw & Wong's F_j = MSC / MSE multiplied out, so that it holds at
    # MSE = 0 (raters that differ only by a constant); v then tends to k - 1.
    a = k * rho * msc
    b = (n * (1 + (k - 1) * rho) - k * rho) * mse
    vd = (n - 1) * a**2 + b**2
    v = (k - 1) * (n - 1) * (a + b) ** 2 / vd if vd > 0 else (k - 1) * (n - 1)
    # v tends to 0 where the raters' variance outweighs the targets' (rho near 0 or below): the F
    # quantiles then overflow to inf, and the bounds are taken at their limits.
    f_high = fdtri(n - 1, v, q) if v > 0 else np.inf
    f_low = fdtri(v, n - 1, q) if v > 0 else np.inf
    c = k * msc + (k * n - k - n) * mse
    if np.isinf(f_high):
        low = -n * mse / c
    else:
        low = n * (msr - f_high * mse) / (f_high * c + n * msr)
    high = 1.0 if np.isinf(f_low) else n * (f_low * msr - mse) / (c + n * f_low * msr)
    if average:
        # Spearman-Brown; it grows from -inf to 1 over (-1/(k-1), 1] and wraps round below.
        low, high = (
            -np.inf if 1 + b_ * (k - 1) <= 0 else b_ * k / (1 + b_ * (k - 1)) for b_ in (low, high)
        )
    return low, high


def icc(ratings, kind="ICC2", confidence=0.95, *, targets=None, raters=None, ratings_column=None):
    """Intraclass correlation of a targets x raters table, with its CI and F test.

    Parameters
    ----------
    ratings : array-like of shape (n_targets, n_raters) or DataFrame
        The ratings: a 2D array or a wide DataFrame (index = targets, e.g. patients; columns =
        raters, e.g. readers or sessions), or, with `targets`, `raters` and `ratings_column`, a
        long-format DataFrame with one row per target and rater. Every rater must rate every
        target.
    kind : {"ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"}, default="ICC2"
        The form, in Shrout & Fleiss's numbering (pingouin's ``ICC(1,1)``, ``ICC(A,1)``,
        ``ICC(C,1)``, ``ICC(1,k)``, ``ICC(A,k)``, ``ICC(C,k)``): ``"ICC1"`` one-way random effects;
        ``"ICC2"`` two-way random effects, absolute agreement; ``"ICC3"`` two-way mixed effects,
        consistency; each of a single rating, or with the ``k`` suffix of the mean of the `n_raters`
        ratings. Koo & Li (2016) recommend ``"ICC2"`` for inter- and intra-reader agreement.
    confidence : float, default=0.95
        Confidence level of the interval, in (0, 1).
    targets, raters, ratings_column : str, default=None
        Long format only: the columns holding the target id, the rater id and the rating. (The
        rating column is ``ratings_column``, not ``ratings=``, because `ratings` is the table.)

    Returns
    -------
    result : ICCResult
        Named tuple ``(icc, ci_low, ci_high, F, p_value)``.

    Raises
    ------
    ValueError
        Fewer than 2 targets or raters, a non-finite rating, a missing or repeated cell of the
        long format, a rater who rated a single target (each named), an unknown `kind`, a
        `confidence` outside (0, 1), or a table without variance between its targets (below).
    TypeError
        Non-numeric ratings, or a long format with one of its column names missing.

    See Also
    --------
    reproducibility_table : The ICC of every feature between mask sets.

    Notes
    -----
    With :math:`n` targets and :math:`k` raters, the two-way ANOVA gives the mean squares of the
    targets :math:`MS_R`, of the raters :math:`MS_C`, of the residual :math:`MS_E` and within
    targets :math:`MS_W = (SS_C + SS_E) / (n(k-1))`. The estimators are

    - ICC1 :math:`= (MS_R - MS_W) / (MS_R + (k-1) MS_W)`, ICC1k :math:`= (MS_R - MS_W) / MS_R`;
    - ICC2 :math:`= (MS_R - MS_E) / (MS_R + (k-1) MS_E + k (MS_C - MS_E) / n)`,
      ICC2k :math:`= (MS_R - MS_E) / (MS_R + (MS_C - MS_E) / n)`;
    - ICC3 :math:`= (MS_R - MS_E) / (MS_R + (k-1) MS_E)`, ICC3k :math:`= (MS_R - MS_E) / MS_R`.

    :math:`F = MS_R / MS_W` on :math:`(n-1, n(k-1))` degrees of freedom for ICC1 and
    :math:`MS_R / MS_E` on :math:`(n-1, (n-1)(k-1))` for ICC2 and ICC3, the p-value its upper tail.
    The intervals of ICC1 and ICC3 come from F quantiles (Shrout & Fleiss); that of ICC2 from
    Satterthwaite's approximate degrees of freedom (McGraw & Wong, Table 7), as pingouin's, which
    the tests compare against.

    Degenerate tables. When the raters agree exactly (no residual, :math:`MS_E = 0`, or for ICC1
    :math:`MS_W = 0`) the estimators and intervals are taken at their limit: F is ``inf``, the
    p-value 0, and ICC1, ICC3 and their CIs equal 1 (ICC2 is below 1 where raters differ by a
    constant). ICC2k is refused where its denominator :math:`MS_R + (MS_C - MS_E)/n` is not
    positive (ICC2 at or below :math:`-1/(k-1)`, where the Spearman-Brown step to ICC2k gives
    values above 1 or infinite), and a bound of ICC2's interval at or below :math:`-1/(k-1)` is
    ``-inf`` in ICC2k's (the limit; pingouin wraps it round to a value above 1). Where
    Satterthwaite's degrees of freedom are close to 0 the F quantiles overflow, and ICC2's bounds
    are taken at their limits (pingouin gives NaN). For a negative ICC2 the published interval
    can miss the estimate. A table whose targets all have the same mean rating (no variance between targets,
    which includes a constant table) is refused with a ``ValueError``: the ICC, the share of the
    variance due to the targets, has no meaning there (the formulas give 0/0, or -1/(k-1) and
    ``-inf`` for the average forms, numbers that look like a verdict but are not one). Sums of
    squares below 1e-12 of the total are taken as exact zeros (rounding noise).

    References
    ----------
    .. [1] P. E. Shrout, J. L. Fleiss, "Intraclass correlations: uses in assessing rater
       reliability", Psychological Bulletin 86(2), 420-428, 1979.
    .. [2] K. O. McGraw, S. P. Wong, "Forming inferences about some intraclass correlation
       coefficients", Psychological Methods 1(1), 30-46, 1996.
    .. [3] T. K. Koo, M. Y. Li, "A guideline of selecting and reporting intraclass correlation
       coefficients for reliability research", Journal of Chiropractic Medicine 15(2), 155-163,
       2016.

    Examples
    --------
    Shrout & Fleiss's example, 6 targets rated by 4 judges:

    >>> from p53radiomics.metrics import icc
    >>> table = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> result = icc(table, kind="ICC2")
    >>> round(result.icc, 3), round(result.ci_low, 3), round(result.ci_high, 3)
    (0.29, 0.019, 0.761)
    >>> round(icc(table, "ICC3k").icc, 2)
    0.91

    The same ratings in long format:

    >>> import pandas as pd
    >>> long = pd.DataFrame(
    ...     [(t, j, v) for t, row in enumerate(table) for j, v in enumerate(row)],
    ...     columns=["patient", "reader", "value"],
    ... )
    >>> round(icc(long, targets="patient", raters="reader", ratings_column="value").icc, 3)
    0.29
    """
    if kind not in ICC_KINDS:
        raise ValueError(f"kind must be one of {list(ICC_KINDS)}; got {kind!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}")
    if targets is None and raters is None and ratings_column is None:
        x, target_ids, _ = _check_wide(ratings)
    else:
        x, target_ids, _ = _check_long(ratings, targets, raters, ratings_column)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError(
            f"the ICC needs at least 2 targets and 2 raters; got {n} target(s) and {k} rater(s)"
        )
    if np.ptp(x) == 0:
        raise ValueError(
            f"all {x.size} ratings equal {x.flat[0]:g}: without variance between targets the ICC "
            "is undefined (0/0)"
        )
    msr, msc, mse, msw = _mean_squares(x)
    if msr == 0:
        raise ValueError(
            f"the {n} targets (e.g. {target_ids[0]!r}, {target_ids[1]!r}) all have the same mean "
            "rating: without variance between targets the ICC is undefined"
        )
    return _icc_from_mean_squares(kind, msr, msc, mse, msw, n, k, confidence)


def _icc_from_mean_squares(kind, msr, msc, mse, msw, n, k, confidence):
    q = 1 - (1 - confidence) / 2
    average = kind.endswith("k")
    df1 = n - 1
    if kind.startswith("ICC1"):
        value = (msr - msw) / msr if average else (msr - msw) / (msr + (k - 1) * msw)
        F, df2 = _ratio(msr, msw), n * (k - 1)
        low, high = _consistency_bounds(F, df1, df2, k, q, average)
    else:
        F, df2 = _ratio(msr, mse), (n - 1) * (k - 1)
        if kind.startswith("ICC3"):
            value = (msr - mse) / msr if average else (msr - mse) / (msr + (k - 1) * mse)
            low, high = _consistency_bounds(F, df1, df2, k, q, average)
        else:
            rho = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
            value = rho
            if average:
                # The one denominator of the six that can reach 0 (rho at -1/(k-1)) or below.
                den = msr + (msc - mse) / n
                if den <= _ZERO_SHARE * (msr + (msc + mse) / n):
                    raise ValueError(
                        f"ICC2k is undefined for this table: MSR + (MSC - MSE)/n = {den:.3g} <= 0 "
                        f"(ICC2 = {rho:.3g} is at or below -1/(k-1); the raters do not agree at all)"
                    )
                value = (msr - mse) / den
            low, high = _agreement_bounds(rho, msr, msc, mse, n, k, q, average)
    p_value = 0.0 if np.isinf(F) else float(fdtrc(df1, df2, F))
    return ICCResult(float(value), float(low), float(high), float(F), p_value)
