"""Tests of the repeated ROIs of a cohort table and of RadiomicsExtractor's robustness filter.

Tiny in-memory tumours and a few first-order and shape features keep every extraction fast; the
ICC of the filter is checked against :func:`p53radiomics.metrics.icc` on the extracted features.
"""

import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import Pipeline

from p53radiomics import make_paper_pipeline
from p53radiomics.exceptions import CohortError, SkippedCaseWarning
from p53radiomics.io import (
    mask_set_patients,
    mask_sets,
    phase_columns,
    read_cohort_csv,
    validate_cohort,
)
from p53radiomics.metrics import icc
from p53radiomics.radiomics import RadiomicsExtractor
from p53radiomics.radiomics._robustness import PERTURBATION_SETTINGS, perturb_case

PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {
        "shape": ["VoxelVolume"],
        "firstorder": ["Mean", "Median", "Entropy", "Kurtosis"],
    },
    "setting": {"binCount": 16},
}
PHASES = ("ap", "pvp")


def _tumour(seed, radius):
    """A textured ball in a textured background on a 0.8 x 0.8 x 2 mm grid, and its mask."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    shape = (10, 20, 20)
    zz, yy, xx = np.indices(shape)
    centre = (np.asarray(shape) - 1) / 2
    dist = np.sqrt(
        ((zz - centre[0]) * 2.0) ** 2
        + ((yy - centre[1]) * 0.8) ** 2
        + ((xx - centre[2]) * 0.8) ** 2
    )
    inside = dist <= radius
    array = 2.0 * inside + gaussian_filter(rng.normal(size=shape), 1.0) * (1 + seed % 5)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((0.8, 0.8, 2.0))
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def _redraw(mask, grow_mm):
    """`mask` grown (or shrunk) by `grow_mm`: a second reader's contour."""
    moved = sitk.BinaryDilate(mask, [1, 1, 0]) if grow_mm > 0 else sitk.BinaryErode(mask, [1, 1, 0])
    moved.CopyInformation(mask)
    return moved


def _cohort(n=6, reader2=(), session2=()):
    """`n` patients; a shared ``mask_reader2`` column and per-phase ``*_mask_session2`` columns."""
    data = {c: [] for c in ("ap", "ap_mask", "pvp", "pvp_mask")}
    extra = {"mask_reader2": [], "ap_mask_session2": [], "pvp_mask_session2": []}
    for i in range(n):
        for k, phase in enumerate(PHASES):
            image, mask = _tumour(10 * i + k, radius=3.5 + 0.6 * i)
            data[phase].append(image)
            data[f"{phase}_mask"].append(mask)
            if k == 0:
                # one shared second-reader mask: the AP one serves both phases (same grid)
                extra["mask_reader2"].append(_redraw(mask, 1) if i in reader2 else None)
            extra[f"{phase}_mask_session2"].append(_redraw(mask, -1) if i in session2 else "")
    X = pd.DataFrame({**data, "age": range(50, 50 + n)}, index=[f"P{i}" for i in range(n)])
    for column, cells in extra.items():
        if any(not (c is None or isinstance(c, str)) for c in cells):
            X[column] = pd.Series(cells, index=X.index, dtype=object)
    return X


# --------------------------------------------------------------------------------------------------
# Repeated ROIs in the cohort table
# --------------------------------------------------------------------------------------------------
def test_repeated_mask_columns_are_resolved():
    X = _cohort(4, reader2=(0, 2), session2=(1, 2, 3))
    assert mask_sets(X.columns, PHASES) == ["reader2", "session2"]
    assert [c.mask for c in phase_columns(X, PHASES, "reader2")] == ["mask_reader2"] * 2
    assert [c.mask for c in phase_columns(X, PHASES, "session2")] == [
        "ap_mask_session2",
        "pvp_mask_session2",
    ]
    X["ap_mask_reader2"] = X["mask_reader2"]  # a phase's own column wins over the shared one
    assert [c.mask for c in phase_columns(X, PHASES, "reader2")] == [
        "ap_mask_reader2",
        "mask_reader2",
    ]
    assert mask_set_patients(X, "reader2", PHASES).tolist() == ["P0", "P2"]
    assert mask_set_patients(X, "session2", PHASES).tolist() == ["P1", "P2", "P3"]
    validate_cohort(X, PHASES)  # empty cells elsewhere, the repeated masks read and checked
    with pytest.raises(CohortError, match="no mask of the set 'reader3'") as excinfo:
        phase_columns(X, PHASES, "reader3")
    assert excinfo.value.column == "ap_mask_reader3"
    with pytest.raises(ValueError, match="mask_set must be None"):
        phase_columns(X, PHASES, "reader 2")


def test_cohort_csv_reads_repeated_masks_as_paths(tmp_path):
    image, mask = _tumour(0, 3.0)
    for name, volume in {
        "a.nii.gz": image,
        "m.nii.gz": mask,
        "m2.nii.gz": _redraw(mask, 1),
    }.items():
        sitk.WriteImage(volume, str(tmp_path / name))
    (tmp_path / "cohort.csv").write_text(
        "patient_id,ap,mask,mask_reader2,age\n"
        "0007,a.nii.gz,m.nii.gz,m2.nii.gz,61\n"
        "0008,a.nii.gz,m.nii.gz,,62\n"
    )
    X = read_cohort_csv(tmp_path / "cohort.csv", phases=("ap",))
    assert X.loc["0007", "mask_reader2"] == str(tmp_path.resolve() / "m2.nii.gz")
    assert pd.isna(X.loc["0008", "mask_reader2"]) and X["age"].dtype.kind == "i"
    validate_cohort(X, phases=("ap",))
    assert mask_set_patients(X, "reader2", ("ap",)).tolist() == ["0007"]


def test_repeated_mask_without_primary_mask_is_refused(assert_located):
    X = _cohort(3, session2=(0, 1))
    X.at["P1", "pvp_mask"] = None
    for call in (
        lambda: validate_cohort(X, PHASES, check_images=False),
        lambda: RadiomicsExtractor(PHASES, PARAMS).fit(X),
        lambda: mask_set_patients(X, "session2", PHASES),
    ):
        with pytest.raises(CohortError, match="no primary mask of phase 'pvp'") as excinfo:
            call()
        assert_located(excinfo, "P1", "pvp_mask_session2")


def test_a_mask_set_on_some_phases_only_is_refused(assert_located):
    X = _cohort(3, session2=(0, 1))
    X.at["P1", "pvp_mask_session2"] = ""
    with pytest.raises(CohortError, match="on every phase or on none") as excinfo:
        validate_cohort(X, PHASES, check_images=False)
    assert_located(excinfo, "P1", "pvp_mask_session2")


def test_a_repeated_mask_of_another_geometry_is_refused(assert_located):
    X = _cohort(3, reader2=(1,))
    moved = sitk.Image(X.at["P1", "mask_reader2"])
    moved.SetOrigin((5.0, 0.0, 0.0))
    X.at["P1", "mask_reader2"] = moved
    validate_cohort(X, PHASES, check_images=False)
    with pytest.raises(CohortError) as excinfo:
        validate_cohort(X, PHASES)
    assert_located(excinfo, "P1", "mask_reader2")


# --------------------------------------------------------------------------------------------------
# Extraction from a mask set
# --------------------------------------------------------------------------------------------------
def test_extraction_from_a_mask_set(assert_located):
    X = _cohort(4, reader2=(1, 3))
    extractor = RadiomicsExtractor(PHASES, PARAMS, mask_set="reader2")
    with pytest.raises(CohortError, match="2 of 4 patients lack it") as excinfo:
        extractor.fit_transform(X)
    assert_located(excinfo, "P0", "mask_reader2")

    have = X.loc[mask_set_patients(X, "reader2", PHASES)]
    features = extractor.fit_transform(have)
    # the same as the primary extraction of a table whose primary masks are the second reader's
    swapped = have.assign(ap_mask=have["mask_reader2"], pvp_mask=have["mask_reader2"])
    expected = RadiomicsExtractor(PHASES, PARAMS).fit_transform(swapped)
    pd.testing.assert_frame_equal(features, expected)
    primary = RadiomicsExtractor(PHASES, PARAMS).fit_transform(have)
    volume = "ap_original_shape_VoxelVolume"
    assert (features[volume] > primary[volume]).all()

    skipping = clone(extractor).set_params(on_error="skip")
    with pytest.warns(SkippedCaseWarning, match="4 of 8"):
        skipped = skipping.fit_transform(X)
    assert skipping.skipped_.index.tolist() == ["P0", "P0", "P2", "P2"]
    assert set(skipping.skipped_["column"]) == {"mask_reader2"}
    assert skipped.loc[["P0", "P2"]].isna().all(axis=None)
    pd.testing.assert_frame_equal(skipped.loc[have.index], features)


# --------------------------------------------------------------------------------------------------
# The robustness filter
# --------------------------------------------------------------------------------------------------
def test_icc_from_repeated_masks_equals_metrics_icc():
    X = _cohort(6, reader2=(0, 1, 2, 4, 5), session2=(1, 2, 3, 4))
    extractor = RadiomicsExtractor(PHASES, PARAMS, robustness_threshold=0.0)
    out = extractor.fit_transform(X)
    assert extractor.robustness_source_ == "repeated"
    assert list(extractor.icc_.columns) == ["reader2", "session2", "icc"]
    primary = RadiomicsExtractor(PHASES, PARAMS).fit_transform(X)
    for name in ("reader2", "session2"):
        patients = mask_set_patients(X, name, PHASES)
        repeated = RadiomicsExtractor(PHASES, PARAMS, mask_set=name).fit_transform(X.loc[patients])
        for feature in (
            "ap_original_firstorder_Mean",
            "pvp_original_shape_VoxelVolume",
            "ap_original_firstorder_Entropy",
        ):
            ratings = np.column_stack([primary.loc[patients, feature], repeated[feature]])
            expected = icc(ratings, kind="ICC2").icc
            assert extractor.icc_.loc[feature, name] == pytest.approx(expected, abs=1e-12)
    assert (extractor.icc_["icc"] == extractor.icc_[["reader2", "session2"]].min(axis=1)).all()
    kept = extractor.icc_.index[extractor.icc_["icc"] >= 0.0].tolist()
    assert extractor.robust_features_.tolist() == kept == out.columns.tolist()
    assert extractor.get_feature_names_out().tolist() == kept
    pd.testing.assert_frame_equal(out, primary[kept])
    pd.testing.assert_frame_equal(extractor.transform(X), out)


def test_too_few_patients_with_a_mask_set_is_refused():
    X = _cohort(4, reader2=(2,))
    for masks in ("auto", ["reader2"]):
        extractor = RadiomicsExtractor(
            PHASES, PARAMS, robustness_threshold=0.5, robustness_masks=masks
        )
        with pytest.raises(
            ValueError, match=r"mask set 'reader2': 1 training patient\(s\) have it \(\['P2'\]\)"
        ):
            extractor.fit(X)
    with pytest.raises(ValueError, match="the table's are \\['reader2'\\]"):
        RadiomicsExtractor(
            PHASES, PARAMS, robustness_threshold=0.5, robustness_masks=["reader3"]
        ).fit(X)


def test_perturbations_are_reproducible_with_random_state():
    image, mask = _tumour(3, 4.0)
    a, b, c = (perturb_case(image, mask, seed) for seed in (7, 7, 8))
    for left, right in zip(a, b, strict=True):
        assert np.array_equal(sitk.GetArrayFromImage(left), sitk.GetArrayFromImage(right))
    assert not np.array_equal(sitk.GetArrayFromImage(a[0]), sitk.GetArrayFromImage(c[0]))
    still = {"grow_mm": 0.0, "translation_voxels": 0.0, "rotation_degrees": 0.0, "noise": False}
    same_image, same_mask = perturb_case(image, mask, 7, still)
    assert np.array_equal(sitk.GetArrayFromImage(same_mask), sitk.GetArrayFromImage(mask))
    assert np.allclose(sitk.GetArrayFromImage(same_image), sitk.GetArrayFromImage(image), atol=1e-5)
    # 1 mm on a 0.8 x 0.8 x 2 mm grid grows or shrinks the contour in plane only, by one voxel
    original = sitk.GetArrayFromImage(mask).astype(bool)
    seen = set()
    for seed in range(8):
        moved = sitk.GetArrayFromImage(
            perturb_case(image, mask, seed, {**still, "grow_mm": 1.0})[1]
        )
        moved = moved.astype(bool)
        grown = moved.sum() > original.sum()
        seen.add(grown)
        inner, outer = (original, moved) if grown else (moved, original)
        assert (outer >= inner).all() and outer.sum() > inner.sum()
        if grown:  # no new slice, and each slice's ROI one voxel wider in plane at most
            assert np.array_equal(moved.any(axis=(1, 2)), original.any(axis=(1, 2)))
            assert np.array_equal(
                moved, ndimage.binary_dilation(original, np.ones((1, 3, 3))) & moved
            )
    assert seen == {True, False}

    X = _cohort(5)
    fits = [
        RadiomicsExtractor(PHASES, PARAMS, robustness_threshold=0.0, random_state=seed).fit(X)
        for seed in (0, 0, 1)
    ]
    assert fits[0].robustness_source_ == "perturb" and fits[0].perturbation_entropy_ == 0
    pd.testing.assert_frame_equal(fits[0].icc_, fits[1].icc_)
    assert not fits[0].icc_["icc"].equals(fits[2].icc_["icc"])
    assert list(fits[0].icc_.columns) == ["perturbation", "icc"]


def test_robust_features_are_fitted_on_training_patients_only():
    X = _cohort(6, reader2=range(6))
    y = np.array([0, 1, 0, 1, 0, 1])
    model = Pipeline(
        [
            ("extract", RadiomicsExtractor(PHASES, PARAMS, robustness_threshold=0.0)),
            ("classifier", LogisticRegression()),
        ]
    )
    folds = list(KFold(2).split(X))
    cv = cross_validate(model, X, y, cv=folds, return_estimator=True, scoring="accuracy")
    for (train, validation), fitted in zip(folds, cv["estimator"], strict=True):
        alone = clone(model.named_steps["extract"]).fit(X.iloc[train])
        pd.testing.assert_frame_equal(fitted.named_steps["extract"].icc_, alone.icc_)
        # the validation patients' second-reader masks change nothing
        other = X.copy()
        for patient in X.index[validation]:
            other.at[patient, "mask_reader2"] = _redraw(X.at[patient, "ap_mask"], -1)
        again = clone(model).fit(other.iloc[train], y[train]).named_steps["extract"]
        pd.testing.assert_frame_equal(again.icc_, alone.icc_)
    whole = clone(model.named_steps["extract"]).fit(X)
    assert not whole.icc_["icc"].equals(alone.icc_["icc"])  # the rows used do matter


def test_threshold_none_is_todays_extractor():
    X = _cohort(3, reader2=(0, 1))
    today = RadiomicsExtractor(PHASES, PARAMS)
    off = RadiomicsExtractor(
        PHASES, PARAMS, robustness_masks="perturb", n_perturbations=5, random_state=0
    )
    pd.testing.assert_frame_equal(off.fit_transform(X), today.fit_transform(X), check_exact=True)
    assert not hasattr(off, "icc_") and not hasattr(off, "robust_features_")
    assert not off.__sklearn_tags__().requires_fit
    assert off.get_feature_names_out().tolist() == today.get_feature_names_out().tolist()
    # a refit without the filter leaves no fitted filter behind
    on = RadiomicsExtractor(PHASES, PARAMS, robustness_threshold=0.0).fit(X)
    assert on.__sklearn_tags__().requires_fit and hasattr(on, "icc_")
    on.set_params(robustness_threshold=None).fit(X)
    assert not hasattr(on, "icc_") and not hasattr(on, "robust_features_")


def test_the_filter_needs_fit_and_refuses_to_keep_nothing():
    X = _cohort(4)
    extractor = RadiomicsExtractor(PHASES, PARAMS, robustness_threshold=0.3, random_state=0)
    with pytest.raises(NotFittedError):
        extractor.transform(X)
    with pytest.raises(NotFittedError):
        extractor.get_feature_names_out()
    with pytest.raises(ValueError, match=r"robustness_threshold=1.0 .* the best is 0\.\d+ \('"):
        clone(extractor).set_params(robustness_threshold=1.0).fit(X)
    with pytest.raises(ValueError, match="robustness_threshold"):
        clone(extractor).set_params(robustness_threshold=1.5).fit(X)
    passthrough = clone(extractor).set_params(passthrough=("age",))
    out = passthrough.fit_transform(X)
    assert out.columns.tolist() == [*passthrough.robust_features_, "age"]
    assert passthrough.get_feature_names_out().tolist() == out.columns.tolist()
    pd.testing.assert_frame_equal(passthrough.transform(X), out)


def test_a_second_fit_reads_the_perturbations_from_the_cache(tmp_path):
    X = _cohort(5)
    n_cases = len(X) * len(PHASES)
    extractor = RadiomicsExtractor(
        PHASES, PARAMS, robustness_threshold=0.0, random_state=0, cache_dir=tmp_path
    )
    start = time.perf_counter()
    extractor.fit(X)
    cold = time.perf_counter() - start
    assert (extractor.cache_misses_, extractor.cache_hits_) == (n_cases, 0)
    assert (extractor.robustness_cache_misses_, extractor.robustness_cache_hits_) == (
        3 * n_cases,
        0,
    )
    second = clone(extractor)
    start = time.perf_counter()
    second.fit(X)
    warm = time.perf_counter() - start
    assert (second.cache_misses_, second.cache_hits_) == (0, n_cases)
    assert (second.robustness_cache_misses_, second.robustness_cache_hits_) == (0, 3 * n_cases)
    pd.testing.assert_frame_equal(second.icc_, extractor.icc_)
    print(f"robustness fit: cold {cold:.2f} s, warm {warm:.2f} s")
    # the key holds the seed: another random_state extracts the perturbations again
    third = clone(extractor).set_params(random_state=1).fit(X)
    assert (third.robustness_cache_misses_, third.robustness_cache_hits_) == (3 * n_cases, 0)
    assert third.cache_hits_ == n_cases
    assert PERTURBATION_SETTINGS["grow_mm"] == 1.0


def test_paper_pipeline_passes_the_threshold():
    model = make_paper_pipeline(["ltd"], robustness_threshold=0.75, random_state=3)
    params = model.get_params()
    assert params["fusion__radiomics__extract__robustness_threshold"] == 0.75
    assert params["fusion__radiomics__extract__random_state"] == 3
    model.set_params(fusion__radiomics__extract__robustness_threshold=None)
    assert (
        make_paper_pipeline(["ltd"]).get_params()[
            "fusion__radiomics__extract__robustness_threshold"
        ]
        is None
    )
