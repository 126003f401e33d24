"""The study's reproducibility step: the ICC of every feature between mask sets, and its summary."""

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._icc import icc

__all__ = ["reproducibility_summary", "reproducibility_table"]

#: Labels of the default comparisons for the mask sets the cohort table names (second reader,
#: second session); any other mask set is labelled ``"<first> vs <other>"``.
COMPARISON_LABELS = {"reader2": "inter-reader", "session2": "intra-reader"}

_COLUMNS = ["icc", "ci_low", "ci_high", "F", "p_value", "n_patients", "constant"]


def _check_tables(features_by_rater):
    if not isinstance(features_by_rater, Mapping) or len(features_by_rater) < 2:
        raise ValueError(
            "features_by_rater must map at least 2 mask-set names to feature DataFrames, e.g. "
            '{"reader1": df1, "reader2": df2}'
        )
    reference_name, reference = next(iter(features_by_rater.items()))
    for name, table in features_by_rater.items():
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"mask set {name!r}: expected a DataFrame, got {type(table).__name__}")
        if table.index.has_duplicates:
            patient = table.index[table.index.duplicated()][0]
            raise ValueError(f"mask set {name!r}: patient {patient!r} appears more than once")
        if table.columns.has_duplicates:
            column = table.columns[table.columns.duplicated()][0]
            raise ValueError(f"mask set {name!r}: feature {column!r} appears more than once")
        columns, expected = set(table.columns), set(reference.columns)
        if columns != expected:
            lacking = [c for c in reference.columns if c not in columns]
            extra = [c for c in table.columns if c not in expected]
            raise ValueError(
                f"mask set {name!r} does not have the columns of {reference_name!r}: "
                f"lacks {lacking[:5]}, has in addition {extra[:5]}"
            )
        non_numeric = [c for c in table.columns if table[c].dtype.kind not in "biuf"]
        if non_numeric:
            raise TypeError(
                f"mask set {name!r}, feature {non_numeric[0]!r}: dtype {table[non_numeric[0]].dtype}"
                " is not numeric"
            )
        values = table.to_numpy(dtype=np.float64)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            i, j = bad[0]
            raise ValueError(
                f"mask set {name!r}: patient {table.index[i]!r}, feature {table.columns[j]!r} is "
                f"{values[i, j]} ({len(bad)} non-finite value(s) in this mask set)"
            )
    return list(reference.columns)


def _default_comparisons(names):
    first = names[0]
    return {
        COMPARISON_LABELS.get(other, f"{first} vs {other}"): (first, other) for other in names[1:]
    }


def _check_comparisons(comparisons, names):
    if comparisons is None:
        return _default_comparisons(names)
    if not isinstance(comparisons, Mapping) or not comparisons:
        raise ValueError(
            'comparisons must map labels to mask-set names, e.g. {"inter-reader": ("reader1", '
            '"reader2")}'
        )
    for label, members in comparisons.items():
        members = [members] if isinstance(members, str) else list(members)
        unknown = [m for m in members if m not in names]
        if unknown:
            raise ValueError(f"comparison {label!r}: unknown mask set(s) {unknown}; known: {names}")
        if len(members) < 2 or len(set(members)) != len(members):
            raise ValueError(
                f"comparison {label!r} needs at least 2 different mask sets; got {members}"
            )
    return {label: tuple(members) for label, members in comparisons.items()}


def _common_patients(features_by_rater, label, members):
    common = features_by_rater[members[0]].index
    for name in members[1:]:
        common = common.intersection(features_by_rater[name].index, sort=False)
    if len(common) < 2:
        held = {name: list(features_by_rater[name].index[:10]) for name in members}
        raise ValueError(
            f"comparison {label!r}: the mask sets {list(members)} share {len(common)} patient(s) "
            f"({list(common)}); the ICC needs at least 2. Patients per mask set: {held}"
        )
    return common


def _comparison_rows(features_by_rater, features, label, members, kind, confidence):
    patients = _common_patients(features_by_rater, label, members)
    # (n_patients, n_features, n_mask_sets), rows in the same patient order for every mask set.
    stack = np.stack(
        [features_by_rater[m].loc[patients, features].to_numpy(np.float64) for m in members],
        axis=2,
    )
    rows = []
    for j, feature in enumerate(features):
        ratings = stack[:, j, :]
        if (np.ptp(ratings, axis=0) == 0).all():
            rows.append((np.nan, np.nan, np.nan, np.nan, np.nan, len(patients), True))
            continue
        try:
            result = icc(ratings, kind=kind, confidence=confidence)
        except ValueError as err:
            raise ValueError(f"comparison {label!r}, feature {feature!r}: {err}") from err
        rows.append((*result, len(patients), False))
    index = pd.MultiIndex.from_product([[label], features], names=["comparison", "feature"])
    return pd.DataFrame(rows, index=index, columns=_COLUMNS)


def reproducibility_table(features_by_rater, comparisons=None, *, kind="ICC2", confidence=0.95):
    """The ICC of every feature between repeated ROIs (readers, sessions), with its CI.

    Parameters
    ----------
    features_by_rater : mapping of str to DataFrame
        For each mask set (e.g. ``{"reader1": df, "reader2": df, "session2": df}``), the features
        extracted from it: index = patient ids, the same feature columns in every table. The first
        entry is the primary ROI. Each comparison uses the patients its mask sets have in common
        (the repeated ROIs usually cover a subset of the cohort).
    comparisons : mapping of str to sequence of str, default=None
        Label of each comparison and the mask sets it compares (2 or more), e.g.
        ``{"inter-reader": ("reader1", "reader2"), "intra-reader": ("reader1", "session2")}``.
        ``None`` compares the first mask set with each other one, labelled ``"inter-reader"`` for
        a set named ``"reader2"``, ``"intra-reader"`` for ``"session2"`` and
        ``"<first> vs <other>"`` otherwise.
    kind : {"ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"}, default="ICC2"
        The ICC form (see :func:`icc`); ICC2 (two-way random, absolute agreement, single
        measures) is the one Koo & Li (2016) recommend for readers and sessions.
    confidence : float, default=0.95
        Confidence level of each feature's interval.

    Returns
    -------
    table : DataFrame
        One row per comparison and feature (MultiIndex ``("comparison", "feature")``), with
        columns ``icc``, ``ci_low``, ``ci_high``, ``F``, ``p_value`` (as :func:`icc`),
        ``n_patients`` (the patients compared) and ``constant``. ``table.attrs`` holds ``kind`` and
        ``confidence``, which :func:`reproducibility_summary` prints.

    Raises
    ------
    ValueError
        Fewer than 2 mask sets, tables with different columns, a repeated patient id or a
        non-finite value (naming the mask set, patient and feature), an unknown mask set in
        `comparisons`, fewer than 2 patients common to a comparison (naming them), or a feature
        that :func:`icc` refuses (named).
    TypeError
        A table that is not a DataFrame or a non-numeric feature column.

    See Also
    --------
    icc : The ICC of one table.
    reproducibility_summary : The study's one-line summary of a comparison.

    Notes
    -----
    A feature that is constant across the compared patients in every mask set of a comparison
    (e.g. a setting echoed as a feature, or a feature that the masks cannot change) has no
    variance between patients, so no ICC: its row has ``constant=True`` and NaN in ``icc``,
    ``ci_low``, ``ci_high``, ``F`` and ``p_value``, and the summary leaves it out. A feature that
    is constant in some mask sets only gets its (low) ICC.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from p53radiomics.metrics import reproducibility_table, reproducibility_summary
    >>> rng = np.random.default_rng(0)
    >>> truth = pd.DataFrame(rng.normal(size=(30, 3)), columns=["volume", "mean", "entropy"])
    >>> def reread(scale):
    ...     return truth + rng.normal(scale=scale, size=truth.shape)
    >>> features = {"reader1": reread(0.2), "reader2": reread(0.4), "session2": reread(0.1)}
    >>> table = reproducibility_table(features)
    >>> table[["icc", "ci_low", "ci_high"]].round(2)
                           icc  ci_low  ci_high
    comparison   feature
    inter-reader volume   0.93    0.85     0.96
                 mean     0.89    0.78     0.95
                 entropy  0.91    0.82     0.96
    intra-reader volume   0.99    0.97     0.99
                 mean     0.98    0.95     0.99
                 entropy  0.96    0.93     0.98
    >>> reproducibility_summary(table, "inter-reader")
    'inter-reader ICC 0.91 (95% CI 0.82-0.96)'
    """
    features = _check_tables(features_by_rater)
    names = list(features_by_rater)
    comparisons = _check_comparisons(comparisons, names)
    # Check kind and confidence once, before the loop over features.
    icc([[0.0, 0.0], [1.0, 1.0]], kind=kind, confidence=confidence)
    parts = [
        _comparison_rows(features_by_rater, features, label, members, kind, confidence)
        for label, members in comparisons.items()
    ]
    table = pd.concat(parts)
    table.attrs = {"kind": kind, "confidence": confidence}
    return table


def _format_bounds(low, high):
    # A hyphen between two negative-looking numbers reads as a minus: say "to" then.
    return f"{low:.2f} to {high:.2f}" if min(low, high) < 0 else f"{low:.2f}-{high:.2f}"


def reproducibility_summary(table, comparison, *, interval="ci"):
    """The study's one-line summary of a comparison, e.g. ``"inter-reader ICC 0.88 (95% CI 0.53-0.99)"``.

    The study reports one ICC and a 95% CI per comparison "for the subregion features", without
    saying how it summarised them. Read as a CI, the summary here is that of the median feature:
    the features are ranked by ICC and the one in the middle (the lower of the two middle ones for
    an even count) is reported with its own confidence interval, so that the three numbers are
    one real ICC and its real CI, not medians of bounds taken from different features. With
    ``interval="features"`` it is the median ICC and the range holding the middle 95% of the
    features' ICCs (their 2.5th and 97.5th percentiles), printed as ``"95% of features"``, not
    as a CI. Constant features (``constant=True``, ICC NaN) are left out.

    Parameters
    ----------
    table : DataFrame
        As returned by :func:`reproducibility_table`.
    comparison : str
        Label of the comparison, e.g. ``"inter-reader"``.
    interval : {"ci", "features"}, default="ci"
        ``"ci"``: the median feature's ICC and its CI; ``"features"``: the median ICC and the
        2.5th-97.5th percentiles of the features' ICCs.

    Returns
    -------
    text : str
        E.g. ``"inter-reader ICC 0.88 (95% CI 0.53-0.99)"``; bounds are joined by ``" to "`` when
        one is negative.

    Raises
    ------
    ValueError
        An unknown comparison or `interval`, or a comparison whose features are all constant.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.metrics import reproducibility_summary
    >>> table = pd.DataFrame(
    ...     {"icc": [0.95, 0.88, 0.40], "ci_low": [0.9, 0.53, 0.1], "ci_high": [0.99, 0.99, 0.6],
    ...      "constant": False},
    ...     index=pd.MultiIndex.from_product([["inter-reader"], ["a", "b", "c"]]),
    ... )
    >>> table.attrs = {"kind": "ICC2", "confidence": 0.95}
    >>> reproducibility_summary(table, "inter-reader")
    'inter-reader ICC 0.88 (95% CI 0.53-0.99)'
    >>> reproducibility_summary(table, "inter-reader", interval="features")
    'inter-reader ICC 0.88 (95% of features 0.42-0.95)'
    """
    if interval not in ("ci", "features"):
        raise ValueError(f'interval must be "ci" or "features"; got {interval!r}')
    labels = list(table.index.get_level_values(0).unique())
    if comparison not in labels:
        raise ValueError(f"comparison {comparison!r} not in the table; it has {labels}")
    rows = table.loc[comparison]
    rows = rows[~rows["constant"].astype(bool)]
    if rows.empty:
        raise ValueError(
            f"comparison {comparison!r}: every feature is constant, no ICC to summarise"
        )
    if interval == "features":
        low, middle, high = np.quantile(rows["icc"], [0.025, 0.5, 0.975])
        return f"{comparison} ICC {middle:.2f} (95% of features {_format_bounds(low, high)})"
    confidence = table.attrs.get("confidence")
    if confidence is None:
        raise ValueError(
            "table.attrs has no 'confidence' (the table was not made by reproducibility_table, or "
            "lost its attrs): set table.attrs['confidence']"
        )
    ranked = rows.sort_values("icc", kind="stable")
    median = ranked.iloc[(len(ranked) - 1) // 2]
    level = f"{100 * confidence:g}%"
    bounds = _format_bounds(median["ci_low"], median["ci_high"])
    return f"{comparison} ICC {median['icc']:.2f} ({level} CI {bounds})"
