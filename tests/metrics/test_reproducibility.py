"""reproducibility_table and reproducibility_summary: the ICC of every feature between mask sets."""

import numpy as np
import pandas as pd
import pytest

from p53radiomics.metrics import icc, reproducibility_summary, reproducibility_table

FEATURES = ["ap_original_shape_VoxelVolume", "ap_original_firstorder_Mean", "pvp_glcm_Contrast"]


def _mask_sets(n=12, seed=0):
    """Features of the same patients from three mask sets, the second session closest."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    truth = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), index=ids, columns=FEATURES)
    return {
        name: truth + rng.normal(scale=scale, size=truth.shape)
        for name, scale in [("reader1", 0.2), ("reader2", 0.5), ("session2", 0.1)]
    }


def test_each_row_is_the_icc_of_the_aligned_patients():
    sets = _mask_sets()
    # Another row and column order, and only 8 of the 12 patients re-read by the second reader.
    sets["reader2"] = sets["reader2"].iloc[::-1][FEATURES[::-1]].iloc[2:10]
    table = reproducibility_table(sets, kind="ICC3", confidence=0.9)
    assert list(table.index.get_level_values(0).unique()) == ["inter-reader", "intra-reader"]
    assert table.index.names == ["comparison", "feature"]
    assert table.attrs == {"kind": "ICC3", "confidence": 0.9}
    common = sets["reader2"].index
    for feature in FEATURES:
        x = np.column_stack(
            [sets["reader1"].loc[common, feature], sets["reader2"].loc[common, feature]]
        )
        row = table.loc[("inter-reader", feature)]
        assert tuple(row[["icc", "ci_low", "ci_high", "F", "p_value"]]) == pytest.approx(
            icc(x, "ICC3", 0.9)
        )
        assert row["n_patients"] == 8 and not row["constant"]
        assert table.loc[("intra-reader", feature), "n_patients"] == 12


def test_the_default_and_named_comparisons():
    sets = _mask_sets()
    other = {"primary": sets["reader1"], "radiologist_b": sets["reader2"]}
    table = reproducibility_table(other)
    assert list(table.index.get_level_values(0).unique()) == ["primary vs radiologist_b"]
    comparisons = {"all three": ("reader1", "reader2", "session2"), "ab": ["reader2", "session2"]}
    table = reproducibility_table(sets, comparisons)
    assert list(table.index.get_level_values(0).unique()) == ["all three", "ab"]
    x = np.column_stack([sets[m][FEATURES[0]] for m in ("reader1", "reader2", "session2")])
    assert table.loc[("all three", FEATURES[0]), "icc"] == pytest.approx(icc(x).icc)


def test_the_second_session_agrees_better_than_the_second_reader():
    table = reproducibility_table(_mask_sets(n=40))
    inter, intra = table.loc["inter-reader", "icc"], table.loc["intra-reader", "icc"]
    assert (intra > inter).all()


def test_constant_features_are_flagged_and_left_out_of_the_summary():
    sets = _mask_sets()
    for name in sets:
        sets[name] = sets[name].assign(setting=25.0)  # constant in every mask set
    sets["reader2"] = sets["reader2"].assign(setting=26.0)  # constant, another value
    sets["session2"]["ap_original_firstorder_Mean"] = 1.0  # constant in one set only
    table = reproducibility_table(sets)
    for comparison in ("inter-reader", "intra-reader"):
        row = table.loc[(comparison, "setting")]
        assert row["constant"] and row[["icc", "ci_low", "ci_high", "F", "p_value"]].isna().all()
    row = table.loc[("intra-reader", "ap_original_firstorder_Mean")]
    assert not row["constant"] and np.isfinite(row["icc"])
    text = reproducibility_summary(table, "inter-reader")
    assert "nan" not in text
    only_constant = reproducibility_table({name: df[["setting"]] for name, df in sets.items()})
    with pytest.raises(ValueError, match="every feature is constant"):
        reproducibility_summary(only_constant, "inter-reader")


def test_too_few_common_patients_are_named():
    sets = _mask_sets()
    sets["reader2"] = sets["reader2"].iloc[[3, 4]].rename(index={"P004": "X9"})
    with pytest.raises(ValueError, match=r"'inter-reader'.*share 1 patient\(s\) \(\['P003'\]\)"):
        reproducibility_table(sets)


def test_summary_is_the_median_feature_with_its_own_ci():
    index = pd.MultiIndex.from_product([["inter-reader"], list("abcd")])
    table = pd.DataFrame(
        {
            "icc": [0.95, 0.88, 0.40, 0.90],
            "ci_low": [0.9, 0.53, -0.2, 0.7],
            "ci_high": [0.99, 0.99, 0.6, 0.97],
            "constant": False,
        },
        index=index,
    )
    table.attrs = {"kind": "ICC2", "confidence": 0.95}
    # Four features: the lower of the two middle ones (0.88), with its own interval.
    assert reproducibility_summary(table, "inter-reader") == (
        "inter-reader ICC 0.88 (95% CI 0.53-0.99)"
    )
    median, low, high = np.median(table.icc), *np.quantile(table.icc, [0.025, 0.975])
    assert reproducibility_summary(table, "inter-reader", interval="features") == (
        f"inter-reader ICC {median:.2f} (95% of features {low:.2f}-{high:.2f})"
    )
    table.attrs["confidence"] = 0.9
    table.loc[("inter-reader", "b"), "icc"] = 0.1  # now "c" (0.40, -0.2 to 0.6) is the median
    assert reproducibility_summary(table, "inter-reader") == (
        "inter-reader ICC 0.40 (90% CI -0.20 to 0.60)"
    )


def test_summary_errors():
    table = reproducibility_table(_mask_sets())
    with pytest.raises(ValueError, match="comparison 'inter reader' not in the table"):
        reproducibility_summary(table, "inter reader")
    with pytest.raises(ValueError, match="interval must be"):
        reproducibility_summary(table, "inter-reader", interval="range")
    table.attrs = {}
    with pytest.raises(ValueError, match="no 'confidence'"):
        reproducibility_summary(table, "inter-reader")


# ------------------------------------------------------------------ bad input
def test_fewer_than_two_mask_sets():
    sets = _mask_sets()
    with pytest.raises(ValueError, match="at least 2 mask-set names"):
        reproducibility_table({"reader1": sets["reader1"]})
    with pytest.raises(ValueError, match="at least 2 mask-set names"):
        reproducibility_table([sets["reader1"], sets["reader2"]])


def test_tables_are_checked_and_problems_named():
    sets = _mask_sets()
    with pytest.raises(TypeError, match="mask set 'reader2': expected a DataFrame"):
        reproducibility_table({**sets, "reader2": sets["reader2"].to_numpy()})
    with pytest.raises(ValueError, match="'reader2' does not have the columns.*lacks \\['pvp"):
        reproducibility_table(
            {**sets, "reader2": sets["reader2"].drop(columns="pvp_glcm_Contrast")}
        )
    with pytest.raises(ValueError, match="'session2' does not have.*in addition \\['extra'\\]"):
        reproducibility_table({**sets, "session2": sets["session2"].assign(extra=1.0)})
    repeated = pd.concat([sets["reader2"], sets["reader2"].iloc[[4]]])
    with pytest.raises(ValueError, match="mask set 'reader2': patient 'P004' appears more than"):
        reproducibility_table({**sets, "reader2": repeated})
    twice = pd.concat([sets["reader2"], sets["reader2"][[FEATURES[0]]]], axis=1)
    with pytest.raises(ValueError, match=f"'reader2': feature '{FEATURES[0]}' appears more than"):
        reproducibility_table({**sets, "reader2": twice})
    text = sets["reader2"].assign(**{FEATURES[1]: "x"})
    with pytest.raises(TypeError, match=f"mask set 'reader2', feature '{FEATURES[1]}'"):
        reproducibility_table({**sets, "reader2": text})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_name_the_patient_and_feature(bad):
    sets = _mask_sets()
    sets["session2"].loc["P007", FEATURES[2]] = bad
    with pytest.raises(ValueError, match=f"'session2': patient 'P007', feature '{FEATURES[2]}'"):
        reproducibility_table(sets)


def test_bad_comparisons():
    sets = _mask_sets()
    with pytest.raises(ValueError, match="'x': unknown mask set\\(s\\) \\['reader3'\\]"):
        reproducibility_table(sets, {"x": ("reader1", "reader3")})
    with pytest.raises(ValueError, match="'x' needs at least 2 different mask sets"):
        reproducibility_table(sets, {"x": ("reader1", "reader1")})
    with pytest.raises(ValueError, match="'x' needs at least 2 different mask sets"):
        reproducibility_table(sets, {"x": "reader1"})
    with pytest.raises(ValueError, match="comparisons must map labels"):
        reproducibility_table(sets, {})


def test_bad_kind_and_confidence():
    sets = _mask_sets()
    with pytest.raises(ValueError, match="kind must be one of"):
        reproducibility_table(sets, kind="ICC4")
    with pytest.raises(ValueError, match="confidence must be a number in"):
        reproducibility_table(sets, confidence=95)


def test_a_feature_icc_refuses_is_named():
    """Equal patient means without being constant: the ICC is undefined, the feature named."""
    ids = ["a", "b", "c"]
    sets = {
        "reader1": pd.DataFrame({"f": [0.1, 0.2, 0.3], "g": [1.0, 2.0, 3.0]}, index=ids),
        "reader2": pd.DataFrame({"f": [0.2, 0.1, 0.0], "g": [1.0, 2.5, 3.0]}, index=ids),
    }
    with pytest.raises(ValueError, match="comparison 'inter-reader', feature 'f': .*same mean"):
        reproducibility_table(sets)
