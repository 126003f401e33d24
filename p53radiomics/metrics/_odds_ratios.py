"""Univariable and multivariable logistic regression, reported as odds ratios (the study's Table 2)."""

import numpy as np
import pandas as pd

from ._checks import positive_mask

__all__ = ["logistic_odds_ratios"]

_STATS = ["odds_ratio", "ci_low", "ci_high", "p_value"]


def _design(X, columns):
    """Numeric design matrix of `columns`; non-numeric columns become 0/1 dummies (first level dropped).

    Returns the matrix and, for each column, the names of its terms.
    """
    parts, terms = [], {}
    for column in columns:
        values = X[column]
        if values.isna().any():
            where = values.index[values.isna().to_numpy()][0]
            raise ValueError(f"column {column!r} holds a missing value (row {where!r})")
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            part = values.astype(np.float64).to_frame(column)
        else:
            part = pd.get_dummies(values, prefix=column, prefix_sep="[", dtype=np.float64)
            part = part.iloc[:, 1:].rename(columns=lambda name: f"{name}]")
        if part.shape[1] == 0 or (part.nunique() < 2).any():
            raise ValueError(f"column {column!r} is constant; it cannot enter a logistic model")
        parts.append(part)
        terms[column] = list(part.columns)
    return pd.concat(parts, axis=1), terms


def _fit(y, design, confidence):
    import statsmodels.api as sm

    result = sm.Logit(y, sm.add_constant(design, has_constant="add")).fit(disp=0)
    ci = np.exp(result.conf_int(alpha=1 - confidence).drop("const"))
    return pd.DataFrame(
        {
            "odds_ratio": np.exp(result.params.drop("const")),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "p_value": result.pvalues.drop("const"),
        }
    )


def logistic_odds_ratios(
    X,
    y,
    columns=None,
    *,
    multivariable=None,
    p_threshold=0.05,
    confidence=0.95,
    pos_label=None,
):
    """Odds ratios of univariable and multivariable logistic regressions, as the study's Table 2.

    Each column is first fitted alone (univariable); the columns whose univariable p-value is
    below `p_threshold` then enter one multivariable model together, unless `multivariable` names
    them. Models are fitted by maximum likelihood with :class:`statsmodels.api.Logit`.

    Parameters
    ----------
    X : pandas.DataFrame
        Candidate predictors, one row per patient.
    y : array-like of shape (n_samples,)
        Binary outcome.
    columns : list of str, default=None
        Columns of `X` to analyse; ``None`` takes them all. Numeric and boolean columns enter as
        they are (the OR is per unit); other columns enter as 0/1 indicators of each level but the
        first, named ``"column[level]"``.
    multivariable : list of str, default=None
        Columns of the multivariable model; ``None`` selects those with a univariable p-value
        below `p_threshold` (for a column with several indicators, the smallest); ``[]`` fits no
        multivariable model.
    p_threshold : float, default=0.05
        Univariable p-value below which a column enters the multivariable model.
    confidence : float, default=0.95
        Confidence level of the Wald intervals.
    pos_label : int, float, bool or str, default=None
        Positive class of `y`; inferred only for labels in {0, 1} or {-1, 1}.

    Returns
    -------
    table : pandas.DataFrame
        One row per term; columns are a two-level index: ``"univariable"`` and ``"multivariable"``,
        each with ``odds_ratio``, ``ci_low``, ``ci_high``, ``p_value``. Terms left out of the
        multivariable model hold NaN there.

    Raises
    ------
    ValueError
        If a column is missing, constant or holds a missing value, or `y` is not binary with both
        classes.

    See Also
    --------
    statsmodels.discrete.discrete_model.Logit : The model fitted.

    Notes
    -----
    The odds ratio of a term is :math:`e^{\\beta}`, its interval
    :math:`e^{\\beta \\pm z_{(1+c)/2}\\,\\mathrm{se}(\\beta)}` and its p-value that of the Wald test,
    as in statsmodels' summary.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from p53radiomics.metrics import logistic_odds_ratios
    >>> rng = np.random.default_rng(3)
    >>> X = pd.DataFrame({"ltd": rng.normal(50, 20, 300), "rim_aphe": rng.integers(0, 2, 300),
    ...                   "age": rng.normal(55, 10, 300)})
    >>> risk = 1 / (1 + np.exp(-(-2 + 0.03 * X["ltd"] + 1.2 * X["rim_aphe"])))
    >>> y = (rng.uniform(size=300) < risk).astype(int)
    >>> table = logistic_odds_ratios(X, y)
    >>> table["multivariable"].round(3)
              odds_ratio  ci_low  ci_high  p_value
    ltd            1.021   1.008    1.033    0.001
    rim_aphe       3.472   2.136    5.645    0.000
    age              NaN     NaN      NaN      NaN
    >>> round(float(table.loc["age", ("univariable", "p_value")]), 3)
    0.406
    """
    if not isinstance(X, pd.DataFrame):
        raise ValueError(
            f"X must be a pandas DataFrame of candidate predictors; got {type(X).__name__}"
        )
    columns = list(X.columns) if columns is None else list(columns)
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in X (columns: {list(X.columns)})")
    if not columns:
        raise ValueError("columns must name at least one column of X")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    y = positive_mask(y, pos_label).astype(np.float64)
    design, terms = _design(X, columns)
    design.index = range(len(design))

    univariable = pd.concat([_fit(y, design[terms[c]], confidence) for c in columns])
    if multivariable is None:
        multivariable = [
            c for c in columns if univariable.loc[terms[c], "p_value"].min() < p_threshold
        ]
    else:
        multivariable = list(multivariable)
        unknown = [c for c in multivariable if c not in terms]
        if unknown:
            raise ValueError(f"multivariable columns {unknown} are not among columns {columns}")
    multi = pd.DataFrame(index=univariable.index, columns=_STATS, dtype=np.float64)
    if multivariable:
        fitted = _fit(y, design[[t for c in multivariable for t in terms[c]]], confidence)
        multi.loc[fitted.index] = fitted
    return pd.concat({"univariable": univariable, "multivariable": multi}, axis=1)
