"""Table 1 (cohort_summary) against SciPy's tests computed directly."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from p53radiomics import CohortError
from p53radiomics.metrics import cohort_summary


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    X = pd.DataFrame(
        {
            "age": rng.normal(58 - 2 * y, 11),
            "ltd": rng.gamma(4 + 2 * y, 9),  # skewed: Mann-Whitney
            "rim_aphe": (rng.random(n) < 0.1 + 0.25 * y).astype(int),
            "gender": np.where(rng.random(n) < 0.8, "male", "female"),
            "cea": rng.gamma(2, 2, n),
            "ap": [f"/data/P{i}_ap.nii.gz" for i in range(n)],
            "ap_mask": [f"/data/P{i}_mask.nii.gz" for i in range(n)],
        }
    )
    return X, y


def test_continuous_rows_match_scipy(table):
    X, y = table
    out = cohort_summary(X, y, continuous_test="ttest")
    a, b = X.age[y == 0], X.age[y == 1]
    assert out.loc[("age", ""), "p_value"] == pytest.approx(stats.ttest_ind(a, b).pvalue)
    assert out.loc[("age", ""), f"0 (n={(y == 0).sum()})"] == f"{a.mean():.2f} ± {a.std():.2f}"
    auto = cohort_summary(X, y)
    assert auto.loc[("ltd", ""), "test"] == "Mann-Whitney U"  # Shapiro-Wilk rejects normality
    assert auto.loc[("ltd", ""), "p_value"] == pytest.approx(
        stats.mannwhitneyu(X.ltd[y == 0], X.ltd[y == 1], alternative="two-sided").pvalue
    )
    assert auto.loc[("age", ""), "test"] == "t-test"


def test_categorical_rows_match_scipy_and_image_columns_are_skipped(table):
    X, y = table
    out = cohort_summary(X, y, group_names=("P53-", "P53+"))
    assert "ap" not in out.index.get_level_values(
        0
    ) and "ap_mask" not in out.index.get_level_values(0)
    crosstab = pd.crosstab(X.rim_aphe, y).to_numpy()
    assert out.loc[("rim_aphe", "0"), "p_value"] == pytest.approx(
        stats.chi2_contingency(crosstab).pvalue
    )
    n_pos = int(((X.rim_aphe == 1) & (y == 1)).sum())
    assert (
        out.loc[("rim_aphe", "1"), f"P53+ (n={(y == 1).sum()})"]
        == f"{n_pos} ({100 * n_pos / (y == 1).sum():.2f})"
    )
    assert np.isnan(
        out.loc[("rim_aphe", "1"), "p_value"]
    )  # the p-value stands on the first level only


def test_fisher_when_an_expected_count_is_small():
    X = pd.DataFrame({"dce": [1, 0, 0, 0, 0, 0, 1, 1, 1, 0]})
    y = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    out = cohort_summary(X, y)
    assert out.loc[("dce", "0"), "test"] == "Fisher's exact"
    assert out.loc[("dce", "0"), "p_value"] == pytest.approx(
        stats.fisher_exact([[4, 2], [1, 3]]).pvalue
    )


def test_bins_give_the_study_categories(table):
    X, y = table
    out = cohort_summary(X, y, columns=["cea"], bins={"cea": [5]})
    assert out.index.get_level_values(1).tolist() == ["<5", "≥5"]
    three = cohort_summary(
        pd.DataFrame({"afp": [1.0, 25.0, 500.0, 3.0]}), [0, 1, 1, 0], bins={"afp": [20, 400]}
    )
    assert three.index.get_level_values(1).tolist() == ["<20", "≥20 and <400", "≥400"]


def test_errors(table):
    X, y = table
    with pytest.raises(CohortError, match="single class"):
        cohort_summary(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="not in X"):
        cohort_summary(X, y, columns=["afp"])
    with pytest.raises(ValueError, match="continuous_test"):
        cohort_summary(X, y, continuous_test="anova")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from(["a", "b", "c"])), min_size=4, max_size=40
    )
)
def test_counts_add_up_for_any_data(rows):
    y = [r[0] for r in rows]
    if len(set(y)) < 2:
        return
    X = pd.DataFrame({"v": [r[1] for r in rows]})
    out = cohort_summary(X, y)
    for j, column in enumerate(out.columns[:2]):
        counts = [int(cell.split()[0]) for cell in out[column]]
        assert sum(counts) == sum(1 for v in y if v == j)
    p = out["p_value"].dropna()
    assert ((p >= 0) & (p <= 1 + 1e-12)).all()


def test_fisher_beyond_2x2_is_the_same_every_time():
    """An r x c Fisher test is a Monte Carlo estimate: seeded, a cohort always gives one Table 1."""
    X = pd.DataFrame(
        {"grade": ["I"] * 3 + ["II"] * 6 + ["III"] * 2 + ["I"] * 6 + ["II"] + ["III"] * 4}
    )
    y = np.r_[np.zeros(11, int), np.ones(11, int)]
    first, second = (cohort_summary(X, y, ["grade"]) for _ in range(2))
    pd.testing.assert_frame_equal(first, second)
    assert (first["test"].dropna() == "Fisher's exact").any()
    table = pd.crosstab(X["grade"], y).to_numpy()
    exact = first["p_value"].dropna().iloc[0]
    unseeded = [stats.fisher_exact(table).pvalue for _ in range(3)]  # SciPy's own, 9,999 draws
    assert np.allclose(exact, unseeded, atol=0.02)
