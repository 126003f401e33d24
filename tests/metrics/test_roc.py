"""ROC statistics against pROC's published values, an O(n^2) route, the bootstrap, and properties."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from p53radiomics.metrics import delong_test, roc_auc_ci, youden_threshold
from p53radiomics.metrics._roc import _delong_placements


@pytest.fixture(scope="module")
def asah(shared_data):
    # shared_data (tests/conftest.py) is ../shared/data or $P53RADIOMICS_SHARED_DATA, else a skip
    path = shared_data / "asah" / "asah.csv"
    if not path.is_file():
        pytest.skip("asah/asah.csv is not available")
    return pd.read_csv(path)


# --------------------------------------------------------------------------------------------------
# pROC's published values on its aSAH data (README of the shared data; pROC's tests/testthat)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "column, expected",
    [("s100b", 0.73136856368563685), ("wfns", 0.823678861788618), ("ndka", 0.611957994579946)],
)
def test_auc_equals_proc(asah, column, expected):
    auc, _, _ = roc_auc_ci(asah["outcome"], asah[column], pos_label="Poor")
    assert auc == pytest.approx(expected, abs=1e-12)


def test_delong_ci_equals_proc(asah):
    auc, low, high = roc_auc_ci(asah["outcome"], asah["ndka"], pos_label="Poor")
    assert auc == pytest.approx(0.611957994579946, abs=1e-12)
    assert low == pytest.approx(0.501244999271703, abs=1e-9)
    assert high == pytest.approx(0.722670989888189, abs=1e-9)


def test_placements_equal_proc(asah):
    # First values of pROC's expected DeLong placements for ndka (helper-deLongPlacementsCpp-expected.R):
    # X for the cases (Poor), Y for the controls (Good), both in data order.
    positive = (asah["outcome"] == "Poor").to_numpy()
    auc, v10, v01 = _delong_placements(positive, asah[["ndka"]].to_numpy().T)
    assert auc[0] == pytest.approx(0.611957994579946, abs=1e-12)
    np.testing.assert_allclose(
        v10[0, :6],
        [
            0.805555555555556,
            0.625,
            0.680555555555556,
            0.763888888888889,
            0.0416666666666667,
            0.277777777777778,
        ],
        atol=1e-12,
    )
    np.testing.assert_allclose(
        v01[0, :6],
        [
            1,
            0.829268292682927,
            0.878048780487805,
            0.707317073170732,
            0.902439024390244,
            0.402439024390244,
        ],
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "a, b, z, p, ci",
    [
        (
            "wfns",
            "s100b",
            2.20898359144091,
            0.0271757822291882,
            (0.0104061769564846, 0.174214419249478),
        ),
        (
            "wfns",
            "ndka",
            2.79777591868904,
            0.00514557970691098,
            (0.0634011709339876, 0.3600405634833566),
        ),
        (
            "ndka",
            "s100b",
            -1.39077002573558,
            0.164295175223054,
            (-0.2876917446341914, 0.0488706064228094),
        ),
    ],
)
def test_delong_test_equals_proc(asah, a, b, z, p, ci):
    # pROC's tests/testthat/test-roc.test.R: roc.test(r.a, r.b), DeLong, paired, two-sided.
    got_z, got_p = delong_test(asah["outcome"], asah[a], asah[b], pos_label="Poor")
    assert got_z == pytest.approx(z, abs=1e-9)
    assert got_p == pytest.approx(p, abs=1e-9)
    # pROC's interval of the difference, rebuilt from z: diff ± 1.96 sd with sd = diff / z.
    diff = roc_auc_score(asah["outcome"] == "Poor", asah[a]) - roc_auc_score(
        asah["outcome"] == "Poor", asah[b]
    )
    sd = diff / got_z
    assert (diff - norm.ppf(0.975) * sd, diff + norm.ppf(0.975) * sd) == pytest.approx(ci, abs=1e-9)
    # Swapping the curves flips z and keeps p, as in pROC.
    assert delong_test(asah["outcome"], asah[b], asah[a], pos_label="Poor") == pytest.approx(
        (-z, p), abs=1e-9
    )


def test_delong_test_identical_curves_as_proc(asah):
    assert delong_test(asah["outcome"], asah["wfns"], asah["wfns"], pos_label="Poor") == (0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# An independent route: DeLong's definition with the O(n^2) kernel
# --------------------------------------------------------------------------------------------------
def _delong_by_definition(positive, scores):
    """AUCs and covariance straight from DeLong et al. (1988), comparing every pair."""
    x, y = scores[:, positive], scores[:, ~positive]
    psi = (x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    auc = psi.mean(axis=(1, 2))
    m, n = x.shape[1], y.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return auc, s10 / m + s01 / n


def _labels_and_scores(min_size=4, max_size=40, n_scores=2, tied=True):
    values = st.integers(0, 6) if tied else st.floats(-1e3, 1e3, allow_nan=False)

    @st.composite
    def strategy(draw):
        n = draw(st.integers(min_size, max_size))
        y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
        # at least two of each class, as DeLong's variance needs
        y[:2], y[2:4] = 0, 1
        scores = [
            np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=float)
            for _ in range(n_scores)
        ]
        return y, scores

    return strategy()


@settings(max_examples=60, deadline=None)
@given(_labels_and_scores())
def test_fast_delong_equals_definition(data):
    y, (a, b) = data
    auc, cov = _delong_by_definition(y == 1, np.vstack([a, b]))
    got_auc, low, high = roc_auc_ci(y, a)
    assert got_auc == pytest.approx(auc[0], abs=1e-12)
    half = norm.ppf(0.975) * np.sqrt(cov[0, 0])
    assert (low, high) == pytest.approx(
        (max(auc[0] - half, 0.0), min(auc[0] + half, 1.0)), abs=1e-10
    )
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z, p = delong_test(y, a, b)
    if var > 1e-14:
        assert z == pytest.approx((auc[0] - auc[1]) / np.sqrt(var), rel=1e-6, abs=1e-9)
        assert p == pytest.approx(2 * norm.sf(abs(z)), abs=1e-12)


def test_delong_test_agrees_with_paired_bootstrap(asah):
    # The standard error of the AUC difference: DeLong's against a plain paired, stratified
    # bootstrap with scikit-learn's roc_auc_score.
    y = (asah["outcome"] == "Poor").to_numpy()
    a, b = asah["wfns"].to_numpy(float), asah["s100b"].to_numpy(float)
    z, _ = delong_test(y, a, b)
    diff = roc_auc_score(y, a) - roc_auc_score(y, b)
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    diffs = []
    for _ in range(1000):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        diffs.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    assert np.std(diffs, ddof=1) == pytest.approx(diff / z, rel=0.1)


@pytest.mark.parametrize("column", ["s100b", "wfns", "ndka"])
def test_bootstrap_ci_agrees_with_delong(asah, column):
    delong = roc_auc_ci(asah["outcome"], asah[column], pos_label="Poor")
    boot = roc_auc_ci(
        asah["outcome"],
        asah[column],
        method="bootstrap",
        n_bootstraps=2000,
        random_state=0,
        pos_label="Poor",
    )
    assert boot[0] == delong[0]
    assert boot[1:] == pytest.approx(delong[1:], abs=0.02)


def test_bootstrap_is_seeded():
    y = [0, 1] * 10
    s = np.linspace(0, 1, 20) + np.tile([0, 0.2], 10)
    first = roc_auc_ci(y, s, method="bootstrap", n_bootstraps=200, random_state=3)
    assert first == roc_auc_ci(y, s, method="bootstrap", n_bootstraps=200, random_state=3)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(_labels_and_scores(n_scores=1, tied=False), st.floats(0.5, 0.99))
def test_ci_contains_auc_and_stays_in_unit_interval(data, confidence):
    y, (s,) = data
    auc, low, high = roc_auc_ci(y, s, confidence)
    assert 0.0 <= low <= auc <= high <= 1.0
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(_labels_and_scores(n_scores=1))
def test_negated_score_gives_one_minus_auc(data):
    y, (s,) = data
    auc, low, high = roc_auc_ci(y, s)
    neg_auc, neg_low, neg_high = roc_auc_ci(y, -s)
    assert neg_auc == pytest.approx(1 - auc, abs=1e-12)
    assert (neg_low, neg_high) == pytest.approx((1 - high, 1 - low), abs=1e-10)


@settings(max_examples=60, deadline=None)
@given(_labels_and_scores(n_scores=1))
def test_delong_test_of_a_score_with_itself(data):
    y, (s,) = data
    assert delong_test(y, s, s) == (0.0, 1.0)
    # any increasing transform ranks the samples alike: same curve, same answer
    assert delong_test(y, s, np.exp(s / 10)) == (0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(_labels_and_scores())
def test_delong_test_is_antisymmetric(data):
    y, (a, b) = data
    z, p = delong_test(y, a, b)
    z2, p2 = delong_test(y, b, a)
    assert z2 == pytest.approx(-z, abs=1e-12)
    assert p2 == pytest.approx(p, abs=1e-12)
    assert 0.0 <= p <= 1.0


def test_delong_test_without_variance():
    y = [0, 0, 0, 1, 1, 1]
    perfect = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    constant = [0.5] * 6
    assert delong_test(y, perfect, constant) == (np.inf, 0.0)
    assert delong_test(y, constant, perfect) == (-np.inf, 0.0)


@settings(max_examples=60, deadline=None)
@given(_labels_and_scores(n_scores=1))
def test_youden_threshold_maximises_j(data):
    y, (s,) = data
    t = youden_threshold(y, s)
    assert t in s
    called = s >= t
    j = called[y == 1].mean() + (~called[y == 0]).mean() - 1
    fpr, tpr, _ = roc_curve(y, s)
    assert j == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    # among equally good thresholds, the highest (most specific)
    for other in s[s > t]:
        c = s >= other
        assert c[y == 1].mean() + (~c[y == 0]).mean() - 1 < j - 1e-12


def test_youden_threshold_on_asah(asah):
    t = youden_threshold(asah["outcome"], asah["s100b"], pos_label="Poor")
    # pROC: coords(r.s100b, "best") gives threshold 0.205 (the midpoint of 0.19 and 0.22),
    # specificity 0.8055556 and sensitivity 0.6341463.
    assert t == pytest.approx(0.22)
    called = asah["s100b"] >= t
    poor = asah["outcome"] == "Poor"
    assert called[poor].mean() == pytest.approx(26 / 41)
    assert (~called[~poor]).mean() == pytest.approx(58 / 72)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("func", [roc_auc_ci, youden_threshold, lambda y, s: delong_test(y, s, s)])
@pytest.mark.parametrize(
    "y, s, match",
    [
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "single class"),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3], "inconsistent numbers of samples"),
        ([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], "missing or infinite"),
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], "must be binary"),
        (["a", "b", "a", "b"], [0.1, 0.2, 0.3, 0.4], "pos_label"),
        ([0, 1, np.nan, 1], [0.1, 0.2, 0.3, 0.4], "missing value"),
    ],
)
def test_invalid_input_raises_value_error(func, y, s, match):
    with pytest.raises(ValueError, match=match):
        func(y, s)


def test_invalid_parameters():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    with pytest.raises(ValueError, match="method"):
        roc_auc_ci(y, s, method="hanley")
    with pytest.raises(ValueError, match="confidence"):
        roc_auc_ci(y, s, confidence=95)
    with pytest.raises(ValueError, match="n_bootstraps"):
        roc_auc_ci(y, s, method="bootstrap", n_bootstraps=0)
    with pytest.raises(ValueError, match="pos_label"):
        roc_auc_ci(y, s, pos_label="yes")
    with pytest.raises(ValueError, match="at least 2 positive"):
        roc_auc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4])


def test_labels_given_as_strings_or_booleans():
    s = [0.1, 0.4, 0.35, 0.8]
    expected = roc_auc_ci([0, 0, 1, 1], s)
    assert roc_auc_ci(["no", "no", "yes", "yes"], s, pos_label="yes") == expected
    assert roc_auc_ci([False, False, True, True], s) == expected
    assert roc_auc_ci([-1, -1, 1, 1], s) == expected


def _band_by_roc_curve(positive, score, fpr_grid, *, confidence, n_bootstraps, random_state):
    """The bootstrap band as it was computed before, one roc_curve per sample: the oracle."""
    from p53radiomics.metrics._roc import _stratified_indices

    def tpr_at(y, s):
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        return tpr[np.searchsorted(fpr, fpr_grid, side="right") - 1]

    indices, _ = _stratified_indices(positive, n_bootstraps, random_state)
    tprs = np.array([tpr_at(positive[idx], score[idx]) for idx in indices])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(tprs, [alpha, 1 - alpha], axis=0)
    return tpr_at(positive, score), low, high


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 12),
    st.integers(2, 12),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from([11, 51, 101]),
)
def test_roc_band_equals_the_roc_curve_of_each_bootstrap_sample(m, n, levels, seed, n_grid):
    # Few score levels; grids of 11, 51 and 101 points hit many rates k / n exactly.
    from p53radiomics.metrics._roc import roc_band

    rng = np.random.default_rng(seed)
    positive = rng.permutation(np.r_[np.ones(m, bool), np.zeros(n, bool)])
    # half-steps for some positives: ties within each class and between the classes
    score = rng.integers(0, levels, m + n) + 0.5 * positive * rng.integers(0, 2, m + n)
    grid = np.linspace(0, 1, n_grid)
    settings_ = dict(confidence=0.9, n_bootstraps=40, random_state=seed % 1000)
    got = roc_band(positive, score, grid, **settings_)
    expected = _band_by_roc_curve(positive, score, grid, **settings_)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
