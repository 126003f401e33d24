"""Table 1: baseline characteristics of a cohort by class, with the study's tests."""

import numpy as np
import pandas as pd
from scipy import stats

from ._labels import check_binary_target

__all__ = ["cohort_summary", "format_p_value"]


def format_p_value(p):
    """A p-value as the study's tables and figures print it.

    ``"<0.001"`` below 0.001, three decimals below 0.01, two decimals up to 0.99, ``">0.99"``
    above; ``""`` for NaN (no test).

    Parameters
    ----------
    p : float
        The p-value.

    Returns
    -------
    text : str

    Examples
    --------
    >>> from p53radiomics.metrics import format_p_value
    >>> [format_p_value(p) for p in (0.0004, 0.0042, 0.042, 0.42, 0.995, float("nan"))]
    ['<0.001', '0.004', '0.04', '0.42', '>0.99', '']
    """
    if np.isnan(p):
        return ""
    if p < 0.001:
        return "<0.001"
    if p > 0.99:
        return ">0.99"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _bin_labels(edges):
    labels = [f"<{edges[0]:g}"]
    labels += [f"≥{lo:g} and <{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f"≥{edges[-1]:g}")
    return labels


def _continuous_test(a, b, method):
    if method == "auto":
        normal = all(len(g) >= 3 and stats.shapiro(g).pvalue > 0.05 for g in (a, b))
        method = "ttest" if normal else "mannwhitney"
    if method == "ttest":
        return float(stats.ttest_ind(a, b).pvalue), "t-test"
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue), "Mann-Whitney U"


#: Monte Carlo draws of the Fisher test on tables larger than 2 x 2 (its p-value to about +-0.0015).
FISHER_RESAMPLES = 99_999


def _categorical_test(table):
    table = table[(table.sum(axis=1) > 0)]
    if table.shape[0] < 2:
        return np.nan, ""
    expected = stats.contingency.expected_freq(table)
    if (expected < 5).any():
        # SciPy estimates an r x c table's exact p-value by Monte Carlo: seeded, so that the same
        # cohort always gives the same Table 1 (unseeded, 9,999 draws moved it by ~0.005)
        method = (
            None
            if table.shape == (2, 2)
            else stats.MonteCarloMethod(n_resamples=FISHER_RESAMPLES, rng=np.random.default_rng(0))
        )
        pvalue = stats.fisher_exact(table, method=method).pvalue
        return float(np.ravel(pvalue)[0]), "Fisher's exact"  # r x c: 1-element arrays
    return float(stats.chi2_contingency(table).pvalue), "chi-square"


def cohort_summary(
    X,
    y,
    columns=None,
    *,
    categorical=None,
    bins=None,
    max_levels=5,
    continuous_test="auto",
    group_names=None,
    decimals=2,
):
    """Baseline characteristics by class, as in the study's Table 1.

    Continuous variables are given as mean ± standard deviation and compared with Student's t-test
    when both groups look normal (Shapiro-Wilk p > 0.05) or else the Mann-Whitney U test;
    categorical variables as n (%) per level, compared with the chi-square test, or Fisher's exact
    test when an expected count is below 5 (beyond 2 x 2 levels, SciPy's Monte Carlo estimate of it,
    seeded, so that the same data always give the same table). Missing values are left out of each
    variable's counts.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table (image columns are ignored unless named in `columns`).
    y : array-like of shape (n_patients,)
        The two groups to compare: P53 status, or any other two-level grouping (e.g. training
        against validation cohort, to check that a split is balanced).
    columns : list of str, default=None
        Variables to summarise, in order. ``None`` takes every column of `X` that is not an image
        or mask column (``ap``, ``ap_mask``, ``mask``... are recognised by holding paths or images).
    categorical : list of str, default=None
        Columns to treat as categorical even if numeric. Numeric columns with at most `max_levels`
        distinct values (0/1 flags, grades) and non-numeric columns are categorical anyway.
    bins : dict of str to list of float, default=None
        Cut points that turn a numeric column into categories, e.g. ``{"afp": [20, 400]}`` gives
        ``<20``, ``≥20 and <400`` and ``≥400``, as the study reports AFP.
    max_levels : int, default=5
        See `categorical`.
    continuous_test : {"auto", "ttest", "mannwhitney"}, default="auto"
        Test for continuous variables.
    group_names : tuple of str, default=None
        Names of the groups, in the sorted order of the values of `y`; ``None`` uses the values.
    decimals : int, default=2
        Decimals of means, standard deviations and percentages.

    Returns
    -------
    table : pandas.DataFrame
        One row per continuous variable and one per level of each categorical variable, indexed by
        ``(variable, level)`` (level ``""`` for continuous variables). Columns: one per group
        (``"name (n=k)"``, formatted strings), ``p_value`` (float, on the first row of each
        variable), ``P value`` (formatted as in the study: ``<0.001``, ``>0.99``) and ``test``.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.metrics import cohort_summary
    >>> X = pd.DataFrame({"ltd": [20.0, 35.0, 30.0, 60.0, 55.0, 70.0], "rim_aphe": [0, 0, 1, 1, 1, 0]})
    >>> table = cohort_summary(X, [0, 0, 0, 1, 1, 1], group_names=("P53-", "P53+"))
    >>> table.loc[("ltd", ""), ["P53- (n=3)", "P53+ (n=3)", "test"]].tolist()
    ['28.33 ± 7.64', '61.67 ± 7.64', 't-test']
    >>> table.loc[("rim_aphe", "1"), "P53+ (n=3)"]
    '2 (66.67)'
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame, got {type(X).__name__}")
    if continuous_test not in ("auto", "ttest", "mannwhitney"):
        raise ValueError(
            f"continuous_test must be 'auto', 'ttest' or 'mannwhitney', got {continuous_test!r}"
        )
    groups = check_binary_target(y, X.index if isinstance(y, pd.Series) else None)
    if len(groups) != len(X):
        raise ValueError(f"y has {len(groups)} values for {len(X)} rows of X")
    values = sorted(pd.unique(groups))
    names = tuple(group_names) if group_names is not None else tuple(map(str, values))
    if len(names) != 2:
        raise ValueError(f"group_names must name 2 groups, got {names!r}")
    in_group = [groups == v for v in values]
    headers = [f"{name} (n={int(g.sum())})" for name, g in zip(names, in_group, strict=True)]
    bins = dict(bins or {})
    categorical = set(categorical or ())
    if columns is None:
        columns = [c for c in X.columns if not _is_image_column(X[c])]
    unknown = [c for c in columns if c not in X.columns]
    if unknown:
        raise ValueError(f"columns not in X: {unknown}")

    rows = []
    for column in columns:
        series = X[column]
        if column in bins:
            edges = sorted(bins[column])
            codes = np.digitize(series.to_numpy(float), edges)
            labels = np.array(_bin_labels(edges), dtype=object)
            series = pd.Series(
                np.where(series.isna(), None, labels[np.minimum(codes, len(edges))]), index=X.index
            )
            levels = [lab for lab in _bin_labels(edges) if (series == lab).any()]
            rows.extend(_categorical_rows(column, series, levels, in_group, headers, decimals))
        elif (
            pd.api.types.is_numeric_dtype(series)
            and column not in categorical
            and series.nunique() > max_levels
        ):
            data = [series[g].dropna().to_numpy(float) for g in in_group]
            p, test = _continuous_test(*data, continuous_test)
            row = {
                h: f"{d.mean():.{decimals}f} ± {d.std(ddof=1):.{decimals}f}"
                for h, d in zip(headers, data, strict=True)
            }
            rows.append(
                ((column, ""), {**row, "p_value": p, "P value": format_p_value(p), "test": test})
            )
        else:
            levels = sorted(series.dropna().unique(), key=lambda v: (str(type(v)), v))
            rows.extend(_categorical_rows(column, series, levels, in_group, headers, decimals))

    index = pd.MultiIndex.from_tuples([r[0] for r in rows], names=["variable", "level"])
    return pd.DataFrame(
        [r[1] for r in rows], index=index, columns=[*headers, "p_value", "P value", "test"]
    )


def _categorical_rows(column, series, levels, in_group, headers, decimals):
    counts = np.array([[int(((series == lev) & g).sum()) for g in in_group] for lev in levels])
    totals = np.array([int((series.notna() & g).sum()) for g in in_group])
    p, test = _categorical_test(counts) if len(levels) > 1 else (np.nan, "")
    out = []
    for i, lev in enumerate(levels):
        cells = {
            h: f"{counts[i, j]} ({100.0 * counts[i, j] / totals[j]:.{decimals}f})"
            if totals[j]
            else "0"
            for j, h in enumerate(headers)
        }
        first = i == 0
        out.append(
            (
                (column, str(lev)),
                {
                    **cells,
                    "p_value": p if first else np.nan,
                    "P value": format_p_value(p) if first else "",
                    "test": test if first else "",
                },
            )
        )
    return out


def _is_image_column(series):
    import SimpleITK as sitk

    sample = series.dropna()
    if sample.empty:
        return False
    first = sample.iloc[0]
    if isinstance(first, sitk.Image):
        return True
    if isinstance(first, str):
        lower = first.lower()
        return lower.endswith(
            (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm")
        ) or series.name.endswith("mask")
    return False
