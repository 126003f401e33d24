"""The study's tables, decision curves and calibration: against dcurves, statsmodels and the paper."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from p53radiomics.metrics import (
    calibration_summary,
    diagnostic_table,
    logistic_odds_ratios,
    net_benefit,
    roc_auc_ci,
    youden_threshold,
)


def _read_shared_csv(shared_data, *parts):
    # shared_data (tests/conftest.py) is ../shared/data or $P53RADIOMICS_SHARED_DATA, else a skip
    path = shared_data.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared reference file {'/'.join(parts)} is not available")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def asah(shared_data):
    return _read_shared_csv(shared_data, "asah", "asah.csv")


@pytest.fixture(scope="module")
def df_binary(shared_data):
    return _read_shared_csv(shared_data, "dca", "df_binary.csv")


@pytest.fixture(scope="module")
def dcurves_reference(shared_data):
    return _read_shared_csv(shared_data, "dca", "dcurves_df_binary_netbenefit.csv")


# --------------------------------------------------------------------------------------------------
# diagnostic_table
# --------------------------------------------------------------------------------------------------
def _cohort_with_counts(tp, fn, tn, fp, rng):
    """Labels and scores whose calls at threshold 0.5 give these counts."""
    y = np.r_[np.ones(tp + fn), np.zeros(tn + fp)].astype(int)
    s = np.r_[
        rng.uniform(0.5, 1, tp),
        rng.uniform(0, 0.5, fn),
        rng.uniform(0, 0.5, tn),
        rng.uniform(0.5, 1, fp),
    ]
    return y, s


def test_diagnostic_table_reproduces_paper_table5_clinical_rows():
    # Table 5, clinical model: TC (128 P53+, 96 P53-) accuracy 0.688, sensitivity 0.727,
    # specificity 0.635; VC (55 P53+, 41 P53-) 0.677, 0.564, 0.829.
    rng = np.random.default_rng(0)
    results = {
        "Clinical model": {
            "TC": _cohort_with_counts(tp=93, fn=35, tn=61, fp=35, rng=rng),
            "VC": _cohort_with_counts(tp=31, fn=24, tn=34, fp=7, rng=rng),
        }
    }
    table = diagnostic_table(results, threshold=0.5)
    assert table[["model", "cohort"]].values.tolist() == [
        ["Clinical model", "TC"],
        ["Clinical model", "VC"],
    ]
    expected = [[0.688, 0.727, 0.635], [0.677, 0.564, 0.829]]
    got = table[["accuracy", "sensitivity", "specificity"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=5e-4)
    assert table["n"].tolist() == [224, 96]


def test_diagnostic_table_threshold_from_reference_cohort():
    rng = np.random.default_rng(1)
    y_tc = rng.integers(0, 2, 80)
    s_tc = y_tc + rng.normal(0, 0.8, 80)
    y_vc = rng.integers(0, 2, 40)
    s_vc = y_vc + rng.normal(0.3, 0.8, 40)
    results = {"model": {"TC": (y_tc, s_tc), "VC": (y_vc, s_vc)}}
    table = diagnostic_table(results)
    cut = youden_threshold(y_tc, s_tc)
    assert table["threshold"].tolist() == [cut, cut]
    vc = table.iloc[1]
    called = s_vc >= cut
    assert vc["sensitivity"] == pytest.approx(called[y_vc == 1].mean())
    assert vc["specificity"] == pytest.approx((~called[y_vc == 0]).mean())
    assert vc["accuracy"] == pytest.approx((called == (y_vc == 1)).mean())
    auc, low, high = roc_auc_ci(y_vc, s_vc)
    assert (vc["auc"], vc["auc_low"], vc["auc_high"]) == (auc, low, high)
    assert vc["auc_ci"] == f"{auc:.3f} ({low:.3f}–{high:.3f})"
    # the threshold chosen on the validation cohort instead
    by_vc = diagnostic_table(results, reference_cohort="VC")
    assert by_vc["threshold"].tolist() == [youden_threshold(y_vc, s_vc)] * 2
    # one threshold per model; bootstrap intervals passed through
    per_model = diagnostic_table(
        results, threshold={"model": 0.5}, method="bootstrap", n_bootstraps=200, random_state=0
    )
    assert per_model["threshold"].tolist() == [0.5, 0.5]
    assert per_model["auc"].tolist() == table["auc"].tolist()


def test_diagnostic_table_several_models_keep_order_and_labels():
    y = ["neg", "neg", "pos", "pos", "neg", "pos"]
    results = {
        "b": {"TC": (y, [0.1, 0.2, 0.8, 0.7, 0.3, 0.9])},
        "a": {"TC": (y, [0.3, 0.1, 0.2, 0.9, 0.6, 0.8])},
    }
    table = diagnostic_table(results, pos_label="pos", decimals=2)
    assert table["model"].tolist() == ["b", "a"]
    assert table.loc[0, "auc_ci"].startswith("1.00 (")


@pytest.mark.parametrize(
    "results, kwargs, match",
    [
        ({}, {}, "non-empty mapping"),
        ({"m": {}}, {}, "non-empty mapping"),
        ({"m": {"TC": ([0, 1], [0.1, 0.2], [1])}}, {}, "pair"),
        (
            {"m": {"TC": ([0, 1, 0, 1], [0.1, 0.6, 0.3, 0.9])}},
            {"reference_cohort": "VC"},
            "reference cohort",
        ),
        ({"m": {"TC": ([0, 1, 0, 1], [0.1, 0.6, 0.3, 0.9])}}, {"threshold": "best"}, "threshold"),
        (
            {"m": {"TC": ([0, 1, 0, 1], [0.1, 0.6, 0.3, 0.9])}},
            {"threshold": {"other": 0.5}},
            "no entry",
        ),
        ({"m": {"TC": ([1, 1, 1, 1], [0.1, 0.6, 0.3, 0.9])}}, {}, "single class"),
    ],
)
def test_diagnostic_table_errors(results, kwargs, match):
    with pytest.raises(ValueError, match=match):
        diagnostic_table(results, **kwargs)


# --------------------------------------------------------------------------------------------------
# net_benefit against dcurves
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["cancerpredmarker", "famhistory"])
def test_net_benefit_equals_dcurves_reference_table(df_binary, dcurves_reference, model):
    reference = dcurves_reference
    thresholds = [i / 100 for i in range(1, 100)]
    table = net_benefit(df_binary["cancer"], df_binary[model], thresholds)
    ref = reference[reference["model"] == model].reset_index(drop=True)
    np.testing.assert_allclose(table["threshold"], ref["threshold"], atol=0)
    for column in ["n", "prevalence", "test_pos_rate", "tp_rate", "fp_rate", "net_benefit"]:
        np.testing.assert_allclose(table[column], ref[column], rtol=0, atol=1e-9, err_msg=column)
    treat_all = reference.loc[reference["model"] == "all", "net_benefit"].to_numpy()
    treat_none = reference.loc[reference["model"] == "none", "net_benefit"].to_numpy()
    np.testing.assert_allclose(table["treat_all"], treat_all, rtol=0, atol=1e-9)
    np.testing.assert_allclose(table["treat_none"], treat_none, rtol=0, atol=0)


def test_net_benefit_default_thresholds(df_binary):
    table = net_benefit(df_binary["cancer"], df_binary["cancerpredmarker"])
    assert table["threshold"].tolist() == [i / 100 for i in range(1, 100)]


@settings(max_examples=10, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(10, 200),
    st.floats(0, 0.2),
    st.sampled_from([None, 0.5]),
)
def test_net_benefit_equals_dcurves_live(seed, n, harm, rounding):
    dcurves = pytest.importorskip("dcurves")
    rng = np.random.default_rng(seed)
    risk = rng.uniform(size=n)
    if rounding:  # ties on the thresholds themselves
        risk = np.round(risk, 1)
    y = (rng.uniform(size=n) < risk).astype(int)
    y[:2] = [0, 1]
    thresholds = [i / 20 for i in range(0, 20)]
    frame = pd.DataFrame({"y": y, "risk": risk})
    oracle = dcurves.dca(
        data=frame, outcome="y", modelnames=["risk"], thresholds=thresholds, harm={"risk": harm}
    )
    table = net_benefit(y, risk, thresholds, harm=harm)
    model = oracle[oracle["model"] == "risk"]
    np.testing.assert_allclose(table["net_benefit"], model["net_benefit"], atol=1e-9)
    np.testing.assert_allclose(
        table["treat_all"], oracle.loc[oracle["model"] == "all", "net_benefit"], atol=1e-9
    )


@pytest.mark.parametrize(
    "score, thresholds, match",
    [
        ([0.1, 0.5, 1.2, 0.3], None, r"\[0, 1\]"),
        ([0.1, 0.5, 0.7, 0.3], [0.2, 1.0], r"\[0, 1\)"),
        ([0.1, 0.5, 0.7, 0.3], [-0.1], r"\[0, 1\)"),
        ([0.1, 0.5, 0.7, 0.3], [np.nan], r"\[0, 1\)"),
        ([0.1, 0.5, 0.7, 0.3], [], "at least one"),
        ([0.1, 0.5, np.nan, 0.3], None, "missing"),
    ],
)
def test_net_benefit_errors(score, thresholds, match):
    with pytest.raises(ValueError, match=match):
        net_benefit([0, 1, 0, 1], score, thresholds)


# --------------------------------------------------------------------------------------------------
# calibration_summary
# --------------------------------------------------------------------------------------------------
def test_calibration_summary_reuses_scikit_learn(df_binary):
    y, p = df_binary["cancer"], df_binary["cancerpredmarker"]
    summary = calibration_summary(y, p, n_bins=8, strategy="quantile")
    prob_true, prob_pred = calibration_curve(y, p, n_bins=8, strategy="quantile")
    np.testing.assert_array_equal(summary.prob_true, prob_true)
    np.testing.assert_array_equal(summary.prob_pred, prob_pred)
    assert summary.brier == brier_score_loss(y, p)


def test_calibration_slope_and_intercept_equal_statsmodels(df_binary):
    import statsmodels.api as sm

    y = df_binary["cancer"].to_numpy(float)
    p = df_binary["cancerpredmarker"].to_numpy()
    lp = logit(p)
    slope = sm.Logit(y, sm.add_constant(lp)).fit(disp=0)
    intercept = sm.GLM(y, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit()
    summary = calibration_summary(y, p)
    assert summary.slope == pytest.approx(slope.params[1], rel=1e-6)
    assert summary.slope_ci == pytest.approx(tuple(slope.conf_int()[1]), rel=1e-6)
    assert summary.intercept == pytest.approx(intercept.params[0], rel=1e-6, abs=1e-9)
    assert summary.intercept_ci == pytest.approx(tuple(intercept.conf_int()[0]), rel=1e-6)


def test_calibration_slope_detects_over_and_under_confidence():
    rng = np.random.default_rng(0)
    lp = rng.normal(0, 1.5, 20000)
    y = rng.uniform(size=lp.size) < expit(lp)
    good = calibration_summary(y, expit(lp))
    assert good.slope_ci[0] < 1 < good.slope_ci[1]
    assert good.intercept_ci[0] < 0 < good.intercept_ci[1]
    assert calibration_summary(y, expit(2 * lp)).slope == pytest.approx(0.5, abs=0.03)
    assert calibration_summary(y, expit(lp + 0.5)).intercept == pytest.approx(-0.5, abs=0.05)


def test_calibration_summary_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_summary([0, 1, 0, 1], [0.2, 1.3, 0.1, 0.6])
    with pytest.raises(ValueError, match="single class"):
        calibration_summary([1, 1, 1, 1], [0.2, 0.3, 0.1, 0.6])
    with pytest.raises(ValueError, match="confidence"):
        calibration_summary([0, 1, 0, 1], [0.2, 0.3, 0.1, 0.6], confidence=1.5)


def test_calibration_summary_takes_probabilities_of_zero_and_one():
    summary = calibration_summary([0, 0, 1, 1, 0, 1], [0.0, 0.2, 1.0, 0.7, 0.4, 0.6])
    assert np.isfinite(summary.intercept)


# --------------------------------------------------------------------------------------------------
# logistic_odds_ratios against statsmodels' own summary
# --------------------------------------------------------------------------------------------------
def _statsmodels_table(frame, formula):
    import statsmodels.formula.api as smf

    summary = smf.logit(formula, frame).fit(disp=0).summary2().tables[1].drop("Intercept")
    return pd.DataFrame(
        {
            "odds_ratio": np.exp(summary["Coef."]),
            "ci_low": np.exp(summary["[0.025"]),
            "ci_high": np.exp(summary["0.975]"]),
            "p_value": summary["P>|z|"],
        }
    )


def test_odds_ratios_equal_statsmodels_summary(asah):
    frame = asah.assign(y=(asah["outcome"] == "Poor").astype(int))
    columns = ["age", "gender", "wfns", "s100b", "ndka"]
    table = logistic_odds_ratios(asah[columns], asah["outcome"], pos_label="Poor")
    assert table.columns.tolist() == [
        (level, stat)
        for level in ("univariable", "multivariable")
        for stat in ("odds_ratio", "ci_low", "ci_high", "p_value")
    ]
    assert table.index.tolist() == ["age", "gender[Male]", "wfns", "s100b", "ndka"]
    for column, term in zip(columns, table.index, strict=True):
        ref = _statsmodels_table(frame, f"y ~ {column}").iloc[0]
        np.testing.assert_allclose(table.loc[term, "univariable"], ref, rtol=1e-6)
    # univariable p < 0.05: age, wfns, s100b enter the multivariable model
    ref = _statsmodels_table(frame, "y ~ age + wfns + s100b")
    np.testing.assert_allclose(table.loc[ref.index, "multivariable"], ref, rtol=1e-6)
    assert table.loc[["gender[Male]", "ndka"], "multivariable"].isna().all().all()


def test_odds_ratios_given_multivariable_columns(asah):
    frame = asah.assign(y=(asah["outcome"] == "Poor").astype(int))
    columns = ["age", "gender", "wfns", "s100b", "ndka"]
    table = logistic_odds_ratios(
        asah, asah["outcome"], columns, multivariable=columns, pos_label="Poor", confidence=0.95
    )
    ref = _statsmodels_table(frame, "y ~ age + gender + wfns + s100b + ndka")
    ref.index = ref.index.str.replace("[T.", "[", regex=False)
    np.testing.assert_allclose(table.loc[ref.index, "multivariable"], ref, rtol=1e-6)
    none = logistic_odds_ratios(asah, asah["outcome"], ["wfns"], multivariable=[], pos_label="Poor")
    assert none["multivariable"].isna().all().all()


@pytest.mark.parametrize(
    "X, columns, match",
    [
        (pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0]}), None, "missing value"),
        (pd.DataFrame({"a": [1.0] * 6}), None, "constant"),
        (pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6]}), ["b"], "not in X"),
        (np.ones((6, 1)), None, "DataFrame"),
    ],
)
def test_odds_ratios_errors(X, columns, match):
    with pytest.raises(ValueError, match=match):
        logistic_odds_ratios(X, [0, 1, 0, 1, 1, 0], columns)


def test_odds_ratios_label_errors():
    X = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6]})
    with pytest.raises(ValueError, match="single class"):
        logistic_odds_ratios(X, [1] * 6)
    with pytest.raises(ValueError, match="rows"):
        logistic_odds_ratios(X, [0, 1, 0])
    with pytest.raises(ValueError, match="multivariable columns"):
        logistic_odds_ratios(X, [0, 1, 0, 1, 1, 0], multivariable=["z"])


def test_the_metrics_do_not_import_the_image_libraries():
    """Layering: statistics on labels and scores need neither SimpleITK, PyRadiomics nor torch."""
    import subprocess
    import sys

    code = (
        "import sys, p53radiomics.metrics; "
        "print(sorted(m for m in ('SimpleITK', 'radiomics', 'torch') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
