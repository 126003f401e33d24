"""icc: Shrout & Fleiss's published values, pingouin as the oracle, degenerate tables, bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from p53radiomics.metrics import ICCResult, icc

KINDS = ["ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"]
PINGOUIN_TYPES = dict(
    zip(
        KINDS, ["ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)"], strict=True
    )
)

#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges, and their Table 4 estimates.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float
)
SHROUT_FLEISS_PUBLISHED = {
    "ICC1": 0.17,
    "ICC2": 0.29,
    "ICC3": 0.71,
    "ICC1k": 0.44,
    "ICC2k": 0.62,
    "ICC3k": 0.91,
}


def _long(x, targets=None, raters=None):
    n, k = x.shape
    targets = list(range(n)) if targets is None else targets
    raters = list(range(k)) if raters is None else raters
    rows = [(targets[i], raters[j], x[i, j]) for i in range(n) for j in range(k)]
    return pd.DataFrame(rows, columns=["target", "rater", "rating"])


def pingouin_icc(x):
    """pingouin's six ICCs of a wide table, its CI at full precision: {kind: ICCResult}."""
    import pingouin

    saved = pingouin.options["round.column.CI95"]
    pingouin.options["round.column.CI95"] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pingouin's divisions by zero on degenerate tables
            table = pingouin.intraclass_corr(_long(x), "target", "rater", "rating")
    finally:
        pingouin.options["round.column.CI95"] = saved
    table = table.set_index("Type")
    return {
        kind: ICCResult(
            table.at[name, "ICC"],
            *table.at[name, "CI95"],
            table.at[name, "F"],
            table.at[name, "pval"],
        )
        for kind, name in PINGOUIN_TYPES.items()
    }


def assert_close_to_pingouin(x, kind, theirs):
    """``icc(x, kind)`` equal to pingouin's to 1e-9 (relative for large values), but for ICC2's
    documented limits: where pingouin's F quantile overflows (Satterthwaite's df near 0) it gives
    NaN and ours is the finite limit; where ICC2's bound is <= -1/(k-1), ICC2k's is -inf (pingouin
    wraps it round); where ICC2 itself is, ICC2k is refused."""
    k = x.shape[1]
    icc2 = icc(x, "ICC2")
    if kind == "ICC2k" and 1 + (k - 1) * icc2.icc <= 1e-9:
        with pytest.raises(ValueError, match="ICC2k is undefined"):
            icc(x, kind)
        return
    ours = icc(x, kind)
    assert np.isfinite([ours.icc, ours.p_value]).all(), kind
    for field in ("icc", "F", "ci_low", "ci_high"):
        if kind == "ICC2k" and field in ("ci_low", "ci_high"):
            if 1 + (k - 1) * getattr(icc2, field) <= 0:
                assert getattr(ours, field) == -np.inf, (kind, field)
                continue
        if np.isnan(getattr(theirs, field)):
            assert kind in ("ICC2", "ICC2k") and field == "ci_low", (kind, field)
            assert np.isfinite(getattr(ours, field)), (kind, field)
            continue
        assert getattr(ours, field) == pytest.approx(getattr(theirs, field), rel=1e-9, abs=1e-9), (
            kind,
            field,
        )
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-6, abs=1e-12), kind


# ------------------------------------------------------------------ published values and oracle
@pytest.mark.parametrize("kind", KINDS)
def test_shrout_fleiss_published_values(kind):
    assert round(icc(SHROUT_FLEISS, kind).icc, 2) == SHROUT_FLEISS_PUBLISHED[kind]


def test_shrout_fleiss_example_equals_pingouin():
    theirs = pingouin_icc(SHROUT_FLEISS)
    for kind in KINDS:
        assert round(theirs[kind].icc, 2) == SHROUT_FLEISS_PUBLISHED[kind]
        assert_close_to_pingouin(SHROUT_FLEISS, kind, theirs[kind])


@st.composite
def tables(draw):
    """Random tables, some with integer ratings (ties, repeated rows) and large rater offsets."""
    n = draw(st.integers(3, 12))
    k = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    target = rng.normal(scale=draw(st.sampled_from([0.1, 1.0, 10.0])), size=(n, 1))
    rater = rng.normal(scale=draw(st.sampled_from([0.0, 1.0, 5.0])), size=(1, k))
    noise = rng.normal(scale=draw(st.sampled_from([0.1, 1.0, 3.0])), size=(n, k))
    x = 100.0 + target + rater + noise
    if draw(st.booleans()):
        x = np.round(x)
    return x


@settings(max_examples=60, deadline=None)
@given(tables())
def test_random_tables_equal_pingouin(x):
    row_means = x.mean(axis=1)
    assume(np.ptp(row_means) > 1e-6 * max(1.0, np.ptp(x)))  # refused tables are tested apart
    resid = x - row_means[:, None] - x.mean(axis=0)[None, :] + x.mean()
    assume((resid**2).sum() > 1e-6 * ((x - x.mean()) ** 2).sum())  # exact agreement apart
    theirs = pingouin_icc(x)
    for kind in KINDS:
        assert_close_to_pingouin(x, kind, theirs[kind])


def test_two_raters_equal_pingouin():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=30)
    x = np.column_stack([truth + rng.normal(scale=0.3, size=30), truth + 0.5])
    theirs = pingouin_icc(x)
    for kind in KINDS:
        assert_close_to_pingouin(x, kind, theirs[kind])


@settings(max_examples=30, deadline=None)
@given(tables(), st.sampled_from(KINDS))
def test_wider_confidence_gives_a_wider_interval_around_the_estimate(x, kind):
    assume(np.ptp(x.mean(axis=1)) > 1e-6 * max(1.0, np.ptp(x)))
    try:
        narrow, wide = icc(x, kind, 0.80), icc(x, kind, 0.99)
    except ValueError as err:  # ICC2k where ICC2 <= -1/(k-1), compared with pingouin above
        assert kind == "ICC2k" and "ICC2k is undefined" in str(err)
        return
    assert narrow.icc == wide.icc and narrow.F == wide.F
    eps = 1e-12  # bounds at their limit (Satterthwaite's df near 0) agree to rounding
    assert wide.ci_low <= narrow.ci_low + eps and narrow.ci_high <= wide.ci_high + eps
    assert narrow.ci_low <= narrow.ci_high + eps
    if kind not in ("ICC2", "ICC2k") or narrow.icc > 0:
        # McGraw & Wong's interval for ICC2 can miss a negative estimate (pingouin's too).
        assert narrow.ci_low - eps <= narrow.icc <= narrow.ci_high + eps


def test_positional_and_keyword_calls_and_the_named_tuple():
    a = icc(SHROUT_FLEISS, "ICC3", 0.9)
    b = icc(ratings=SHROUT_FLEISS, kind="ICC3", confidence=0.9)
    assert a == b and isinstance(a, ICCResult)
    value, low, high, F, p = a
    assert (value, low, high, F, p) == (a.icc, a.ci_low, a.ci_high, a.F, a.p_value)
    assert icc(SHROUT_FLEISS) == icc(SHROUT_FLEISS, "ICC2", 0.95)


def test_wide_dataframe_and_long_format_equal_the_array():
    ids = [f"P{i:03d}" for i in range(6)]
    readers = ["reader1", "reader2", "session2", "reader3"]
    wide = pd.DataFrame(SHROUT_FLEISS, index=ids, columns=readers)
    long = _long(SHROUT_FLEISS, ids, readers).sample(frac=1.0, random_state=0)  # any row order
    for kind in KINDS:
        expected = icc(SHROUT_FLEISS, kind)
        assert icc(wide, kind) == pytest.approx(expected, rel=1e-12)
        got = icc(long, kind, targets="target", raters="rater", ratings_column="rating")
        assert got == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ degenerate tables
def test_exact_agreement_is_one_with_an_infinite_F():
    x = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [5.0, 5.0, 5.0], [3.0, 3.0, 3.0]])
    theirs = pingouin_icc(x)
    for kind in KINDS:
        assert icc(x, kind) == (1.0, 1.0, 1.0, np.inf, 0.0)
        assert theirs[kind].icc == pytest.approx(1.0)


def test_raters_differing_by_a_constant_take_the_limits():
    """No residual: ICC3 is 1, ICC2 below it; ICC2's CI is the limit of pingouin's near it."""
    x = np.array([[1.0, 2.0], [2.0, 3.0], [5.0, 6.0], [4.0, 5.0], [0.0, 1.0]])
    near = x + np.array([[1e-5, 0], [0, 0], [0, 0], [0, 0], [0, 0]])  # a small residual
    theirs = pingouin_icc(near)
    for kind in KINDS:
        ours = icc(x, kind)
        assert np.isfinite([ours.icc, ours.ci_low, ours.ci_high]).all()
        assert ours.icc == pytest.approx(theirs[kind].icc, abs=1e-6)
        assert ours.ci_low == pytest.approx(theirs[kind].ci_low, abs=1e-4)
        assert ours.ci_high == pytest.approx(theirs[kind].ci_high, abs=1e-4)
    assert icc(x, "ICC3") == (1.0, 1.0, 1.0, np.inf, 0.0)
    assert icc(x, "ICC2").icc < 1.0 and icc(x, "ICC2").F == np.inf


def test_a_constant_table_is_refused():
    with pytest.raises(ValueError, match="all 8 ratings equal 3.*undefined"):
        icc(np.full((4, 2), 3.0))


@pytest.mark.parametrize("kind", KINDS)
def test_targets_with_equal_means_are_refused(kind):
    """No variance between targets: the formulas give -1/(k-1) or -inf, which would mislead."""
    # Row sums equal in exact arithmetic, not always in floating point: rounding noise is a zero.
    x = np.array([[0.1, 0.2], [0.2, 0.1], [0.3, 0.0]])
    with pytest.raises(ValueError, match="same mean rating"):
        icc(x, kind)
    columns_constant = np.array([[5.0, 6.0], [5.0, 6.0], [5.0, 6.0]])
    with pytest.raises(ValueError, match="same mean rating"):
        icc(columns_constant, kind)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("shape", [(5, 1), (1, 4), (0, 3), (1, 1)])
def test_fewer_than_two_targets_or_raters(shape):
    with pytest.raises(ValueError, match="at least 2 targets and 2 raters"):
        icc(np.arange(np.prod(shape), dtype=float).reshape(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_ratings_are_named(bad):
    x = SHROUT_FLEISS.copy()
    x[2, 1] = bad
    with pytest.raises(ValueError, match="target 2, rater 1: rating .* not finite"):
        icc(x)
    wide = pd.DataFrame(x, index=[f"P{i}" for i in range(6)], columns=list("abcd"))
    with pytest.raises(ValueError, match="target 'P2', rater 'b'"):
        icc(wide)
    long = _long(x, [f"P{i}" for i in range(6)], list("abcd"))
    with pytest.raises(ValueError, match="target 'P2', rater 'b'.*'rating' is not finite"):
        icc(long, targets="target", raters="rater", ratings_column="rating")


def test_missing_cell_in_long_format_is_named():
    long = _long(SHROUT_FLEISS, [f"P{i}" for i in range(6)], list("abcd"))
    long = long[~((long.target == "P3") & (long.rater == "c"))]
    with pytest.raises(ValueError, match="target 'P3', rater 'c': no rating"):
        icc(long, targets="target", raters="rater", ratings_column="rating")


def test_rater_with_a_single_target_is_named():
    long = _long(SHROUT_FLEISS, [f"P{i}" for i in range(6)], list("abcd"))
    extra = pd.DataFrame([("P4", "e", 3.0)], columns=long.columns)
    with pytest.raises(ValueError, match="rater 'e' rated a single target \\('P4'\\)"):
        icc(pd.concat([long, extra]), targets="target", raters="rater", ratings_column="rating")


def test_long_format_errors():
    long = _long(SHROUT_FLEISS, [f"P{i}" for i in range(6)], list("abcd"))
    kwargs = {"targets": "target", "raters": "rater", "ratings_column": "rating"}
    with pytest.raises(ValueError, match="target 'P0', rater 'a': rated more than once"):
        icc(pd.concat([long, long.iloc[:1]]), **kwargs)
    with pytest.raises(TypeError, match="needs all of"):
        icc(long, targets="target", raters="rater")
    with pytest.raises(ValueError, match="not in the table"):
        icc(long, targets="patient", raters="rater", ratings_column="rating")
    with pytest.raises(TypeError, match="long-format DataFrame"):
        icc(SHROUT_FLEISS, **kwargs)
    with pytest.raises(TypeError, match="numeric ratings"):
        icc(long.assign(rating=long.rating.astype(str)), **kwargs)
    with pytest.raises(ValueError, match="column 'target' is missing"):
        icc(long.assign(target=long.target.where(long.index != 5)), **kwargs)


@pytest.mark.parametrize("kind", ["ICC4", "icc2", "ICC(2,1)", None])
def test_unknown_kind(kind):
    with pytest.raises(ValueError, match="kind must be one of"):
        icc(SHROUT_FLEISS, kind)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1, 95, "0.95", True, np.nan])
def test_confidence_outside_the_unit_interval(confidence):
    with pytest.raises(ValueError, match="confidence must be a number in \\(0, 1\\)"):
        icc(SHROUT_FLEISS, confidence=confidence)


def test_not_a_numeric_table():
    with pytest.raises(ValueError, match="2D"):
        icc([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="numeric"):
        icc([["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match="column 'b'"):
        icc(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
