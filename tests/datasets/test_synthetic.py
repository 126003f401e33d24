"""The synthetic cohort: files that validate, Table 1's class-wise figures, Table 2's structure,
tumours that look like their variables, scanners that differ, and byte-identical reruns."""

import filecmp

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from p53radiomics.datasets import SCANNERS, make_synthetic_cohort
from p53radiomics.datasets._clinical import draw_clinical
from p53radiomics.io import read_cohort_csv, validate_cohort

CLINICAL = [
    "age", "gender", "afp", "cea", "ca199", "edmondson_grade", "mvi", "ltd", "rim_aphe", "washout",
    "delayed_central_enhancement", "capsule", "scanner",
]  # fmt: skip


def test_table_columns_files_and_csv(synthetic_cohort):
    X, y, directory = synthetic_cohort
    assert list(X.columns) == ["ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask", *CLINICAL]
    assert X.index.name == "patient_id" and X.index.is_unique
    assert y.name == "p53" and set(y) <= {0, 1} and y.index.equals(X.index)
    validate_cohort(X, y=y if y.nunique() == 2 else None, required_columns=CLINICAL)
    X_csv, y_csv = read_cohort_csv(directory / "cohort.csv", label="p53")
    pd.testing.assert_frame_equal(X_csv, X, check_dtype=False)
    pd.testing.assert_series_equal(y_csv, y, check_dtype=False)
    header = (directory / "cohort.csv").read_text(encoding="utf-8").splitlines()[1]
    assert ",images/P0001_ap.nii.gz," in header  # relative paths in the CSV


def test_same_seed_gives_byte_identical_files_whatever_n_jobs(tmp_path):
    make_synthetic_cohort(tmp_path / "a", n_patients=3, random_state=7, voxel_scale=3.0)
    make_synthetic_cohort(tmp_path / "b", n_patients=3, random_state=7, voxel_scale=3.0, n_jobs=2)
    make_synthetic_cohort(tmp_path / "c", n_patients=3, random_state=8, voxel_scale=3.0)
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert len(names) == 18
    match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "a" / "images", tmp_path / "b" / "images", names, shallow=False
    )
    assert not mismatch and not errors
    assert filecmp.cmp(tmp_path / "a" / "cohort.csv", tmp_path / "b" / "cohort.csv", shallow=False)
    assert not filecmp.cmp(
        tmp_path / "a" / "images" / "P0001_ap.nii.gz",
        tmp_path / "c" / "images" / "P0001_ap.nii.gz",
        shallow=False,
    )


@pytest.mark.parametrize("n_patients, n_scanners", [(12, 7), (40, 7), (96, 3), (320, 7)])
def test_a_smaller_cohort_keeps_the_class_balance_and_the_scanner_mix(
    tmp_path, n_patients, n_scanners
):
    """``demo --n-patients N`` draws the study's cohort in miniature: the study's share of
    mutated patients, and each scanner holding an equal share of each class (to one patient)."""
    X, y = make_synthetic_cohort(tmp_path, n_patients=n_patients, random_state=3,
                                 voxel_scale=6.0, n_scanners=n_scanners, n_repeated=0)  # fmt: skip
    assert y.sum() == round(n_patients * 183 / 320)
    names = [s.name for s in SCANNERS[:n_scanners]]
    counts = pd.crosstab(X["scanner"], y).reindex(index=names, columns=[0, 1], fill_value=0)
    assert (counts.max() - counts.min() <= 1).all(), counts


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), prevalence=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_the_number_of_mutated_patients_is_the_prevalence_rounded(n, prevalence, seed):
    _, y = draw_clinical(n, np.random.default_rng(seed), prevalence)
    assert y.sum() == round(n * prevalence) and set(np.unique(y)) <= {0, 1}


def test_clinical_variables_follow_table_1_by_class():
    clinical, y = draw_clinical(6000, np.random.default_rng(0))
    assert abs(y.mean() - 183 / 320) < 0.02
    neg, pos = clinical[y == 0], clinical[y == 1]
    # Table 1, pooled cohorts: (P53-, P53+), tolerances covering sampling error and truncation
    assert abs(neg.age.mean() - 59.3) < 1.0 and abs(pos.age.mean() - 57.4) < 1.0
    assert (
        abs((neg.gender == "male").mean() - 0.781) < 0.03
        and abs((pos.gender == "male").mean() - 0.831) < 0.03
    )
    assert abs(neg.rim_aphe.mean() - 0.095) < 0.02 and abs(pos.rim_aphe.mean() - 0.333) < 0.03
    assert (
        35 < neg.ltd.mean() < 41 and 46 < pos.ltd.mean() < 52
    )  # 36.1 and 48.1 before truncation to 10-100 mm
    assert clinical.ltd.between(10, 100).all()
    assert (
        abs((neg.cea >= 5).mean() - 0.073) < 0.02 and abs((pos.ca199 >= 37).mean() - 0.104) < 0.02
    )
    assert abs((neg.washout == "none").mean() - 0.168) < 0.03
    for column in (
        "edmondson_grade",
        "mvi",
        "afp",
        "capsule",
    ):  # mediated: higher in the mutated class
        assert (pos[column] > pos[column].median()).mean() >= (
            neg[column] > neg[column].median()
        ).mean()
    assert (pos.edmondson_grade == 3).mean() > (neg.edmondson_grade == 3).mean() + 0.1


def test_ltd_and_rim_aphe_are_the_independent_predictors():
    clinical, y = draw_clinical(5000, np.random.default_rng(1))
    X = pd.DataFrame(
        {
            "ltd": clinical.ltd,
            "rim_aphe": clinical.rim_aphe,
            "grade": clinical.edmondson_grade,
            "mvi": clinical.mvi,
            "afp": np.digitize(clinical.afp, [20, 400]),
        }
    )
    for column in X:  # univariable: every one is associated with P53
        fit = sm.Logit(y, sm.add_constant(X[[column]])).fit(disp=0)
        assert fit.params[column] > 0 and fit.pvalues[column] < 0.01, column
    multi = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    assert multi.pvalues["ltd"] < 1e-6 and multi.pvalues["rim_aphe"] < 1e-6
    assert (
        1.01 < np.exp(multi.params["ltd"]) < 1.06 and 2.5 < np.exp(multi.params["rim_aphe"]) < 7.0
    )
    for column in (
        "grade",
        "mvi",
        "afp",
    ):  # mediated through LTD and rim-APHE: no effect of their own
        assert abs(multi.params[column]) < 0.2, column


def _arrays(X, pid, phase):
    image = sitk.ReadImage(X.loc[pid, phase])
    mask = sitk.ReadImage(X.loc[pid, f"{phase}_mask"])
    return sitk.GetArrayFromImage(image).astype(float), sitk.GetArrayFromImage(mask) > 0, image


@pytest.fixture(scope="module")
def fine_cohort(tmp_path_factory):
    return make_synthetic_cohort(
        tmp_path_factory.mktemp("fine"), n_patients=24, random_state=3, voxel_scale=1.0, n_jobs=2
    )


def test_tumour_size_is_ltd(fine_cohort):
    X, _ = fine_cohort
    for pid in X.index[:8]:
        _, mask, image = _arrays(X, pid, "pvp")
        zz, yy, xx = np.nonzero(mask)
        points = np.c_[xx, yy, zz] * np.asarray(image.GetSpacing())
        extent = np.ptp(points @ _directions().T, axis=0).max() + min(image.GetSpacing())
        assert abs(extent - X.loc[pid, "ltd"]) < 0.2 * X.loc[pid, "ltd"] + 3.0, (
            pid,
            extent,
            X.loc[pid, "ltd"],
        )


def _directions():
    angles = np.linspace(0, np.pi, 36, endpoint=False)
    return np.c_[np.cos(angles), np.sin(angles), np.zeros_like(angles)]


def test_enhancement_follows_the_variables(fine_cohort):
    X, _ = fine_cohort
    seen = set()
    for pid in X.index:
        ap, mask_ap, _ = _arrays(X, pid, "ap")
        pvp, mask_pvp, _ = _arrays(X, pid, "pvp")
        if mask_ap.sum() < 200:
            continue
        # the liver as the tumour's neighbourhood: a shell 3-8 voxels in-plane around the ROI
        from scipy.ndimage import binary_dilation

        ring = binary_dilation(mask_ap, iterations=6) & ~binary_dilation(mask_ap, iterations=3)
        core = mask_ap & ~binary_dilation(~mask_ap, iterations=3)
        if X.loc[pid, "rim_aphe"] == 0:
            assert ap[mask_ap].mean() > 1.2 * ap[ring].mean(), pid  # arterial hyperenhancement
            seen.add("aphe")
        elif core.sum() > 20:
            rim = mask_ap & ~core
            assert ap[rim].mean() > ap[core].mean(), pid  # rim enhancement around a darker core
            seen.add("rim")
        ring_pvp = binary_dilation(mask_pvp, iterations=6) & ~binary_dilation(
            mask_pvp, iterations=3
        )
        if X.loc[pid, "washout"] == "nonperipheral" and not X.loc[pid, "capsule"]:
            assert pvp[mask_pvp].mean() < pvp[ring_pvp].mean(), pid
            seen.add("washout")
    assert {"aphe", "rim"} <= seen


def test_scanners_differ_in_spacing_scale_and_noise(fine_cohort):
    X, _ = fine_cohort
    assert len(SCANNERS) >= 5 and len({s.spacing for s in SCANNERS}) == len(SCANNERS)
    assert len({s.scale for s in SCANNERS}) >= 5 and len({s.noise for s in SCANNERS}) >= 5
    spacing = {
        X.loc[pid, "scanner"]: sitk.ReadImage(X.loc[pid, "ap"]).GetSpacing() for pid in X.index
    }
    assert len(spacing) >= 5
    for name, value in spacing.items():
        expected = next(s.spacing for s in SCANNERS if s.name == name)
        np.testing.assert_allclose(value, expected)
    backgrounds = {}
    for pid in X.index:
        ap, _, _ = _arrays(X, pid, "ap")
        backgrounds.setdefault(X.loc[pid, "scanner"], []).append(np.median(ap[ap.shape[0] // 2]))
    medians = [np.median(v) for v in backgrounds.values()]
    assert max(medians) > 2 * min(medians)  # intensity scales differ between scanners


def test_phases_are_aligned_but_not_identical(fine_cohort):
    X, _ = fine_cohort
    pid = X.index[0]
    masks = [_arrays(X, pid, p)[1] for p in ("ap", "pvp", "dp")]
    overlap = (masks[0] & masks[1]).sum() / masks[0].sum()
    assert 0.5 < overlap <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_patients": 0}, "n_patients"),
        ({"n_scanners": 9}, "n_scanners"),
        ({"voxel_scale": 0}, "voxel_scale"),
        ({"prevalence": 1.0}, "prevalence"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_cohort(tmp_path, **{"n_patients": 2, **kwargs})
