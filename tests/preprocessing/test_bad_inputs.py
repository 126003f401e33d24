"""Bad inputs to the preprocessing steps (DESIGN §7): N4Resampler and LargestSliceCropper refuse
a missing, unreadable or empty cell, an empty or multi-label mask, a geometry mismatch, NaN,
infinite or constant images with a CohortError naming the patient and the column, or skip the
case under on_error="skip" and record it; an unknown phase is named.

The broken cohorts come from ``bad_cohort`` in ``conftest.py``: tiny phantoms on disk, one of the
two patients broken one way.
"""

import warnings
from re import search as re_search

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.exceptions import CohortError, SkippedCaseWarning
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler

PHASES = ("ap", "pvp", "dp")
FAST = {"n_iterations": (20, 20)}  # enough for tiny phantoms; keeps the module fast


# --------------------------------------------------------------------------------- bad inputs


BAD_INPUTS = [
    "missing file",
    "unreadable file",
    "empty cell",
    "empty mask",
    "several labels",
    "geometry mismatch",
    "NaN voxel",
    "infinite voxel",
    "constant image",
]


@pytest.mark.parametrize("problem", BAD_INPUTS)
@pytest.mark.parametrize("cache", [False, True])
def test_bad_inputs_name_patient_and_column(tmp_path, problem, cache, bad_cohort, assert_located):
    X, column = bad_cohort(tmp_path, problem)
    step = N4Resampler(cache_dir=tmp_path / "cache" if cache else None, **FAST)
    with pytest.raises(CohortError) as excinfo:
        step.fit_transform(X)
    assert_located(excinfo, "P2", column)


@pytest.mark.parametrize("problem", BAD_INPUTS)
def test_bad_inputs_name_patient_and_column_in_the_cropper(
    tmp_path, problem, bad_cohort, assert_located
):
    X, column = bad_cohort(tmp_path, problem)
    with pytest.raises(CohortError) as excinfo:
        LargestSliceCropper(size=8).fit_transform(X)
    assert_located(excinfo, "P2", column)


@pytest.mark.parametrize(
    "step", [N4Resampler(phases=("ap", "t2")), LargestSliceCropper(phases=("ap", "t2"))]
)
def test_unknown_phase_is_named(step, phantom_cohort):
    with pytest.raises(CohortError, match="unknown phase 't2'"):
        step.fit(phantom_cohort(n=1))


def test_on_error_skip_goes_on_and_records(tmp_path, phantom_cohort, bad_cohort):
    X, _ = bad_cohort(tmp_path, "empty mask")
    X = pd.concat(
        [
            X,
            phantom_cohort(n=1, shared_mask=False, folder=tmp_path / "more").rename(
                index={"P1": "P3"}
            ),
        ]
    )
    step = N4Resampler(on_error="skip", cache_dir=tmp_path / "cache", **FAST)
    with pytest.warns(SkippedCaseWarning, match="skipped 1 of 3 cases.*'P2'.*mask is empty"):
        Xt = step.fit_transform(X)
    assert list(step.skipped_.index) == ["P2"]
    assert (
        step.skipped_.loc["P2", "column"] == "dp_mask"
        and "mask is empty" in step.skipped_.loc["P2", "reason"]
    )
    image_columns = [c for c in Xt.columns if c != "ltd"]
    assert Xt.loc["P2", image_columns].isna().all()  # the whole case, every phase
    assert Xt.loc[["P1", "P3"], image_columns].notna().all().all()
    assert Xt.loc["P2", "ltd"] == X.loc["P2", "ltd"]
    # A clean run resets the record.
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedCaseWarning)
        step.fit_transform(X.drop(index="P2"))
    assert step.skipped_.empty


@pytest.mark.parametrize("problem", ["NaN voxel", "infinite voxel", "constant image"])
def test_non_finite_and_constant_images_are_refused_or_skipped(
    tmp_path, problem, voxels, bad_cohort, assert_located
):
    """They used to pass through: NaN in the volumes and crops, a constant image "normalised" to
    values in [-1.6, 3.2] by N4. Now both steps refuse them, or skip them under on_error="skip"."""
    X, column = bad_cohort(tmp_path, problem)
    message = (
        "constant" if problem == "constant image" else "NaN and 0 infinite|0 NaN and 1 infinite"
    )
    for step in (N4Resampler(**FAST), LargestSliceCropper(size=8)):
        with pytest.raises(CohortError, match=message) as excinfo:
            step.fit_transform(X)
        assert_located(excinfo, "P2", column)

    n4 = N4Resampler(on_error="skip", **FAST)
    with pytest.warns(SkippedCaseWarning, match="skipped 1 of 2 cases.*'P2'"):
        Xt = n4.fit_transform(X)
    assert list(n4.skipped_.index) == ["P2"] and n4.skipped_.loc["P2", "column"] == column
    assert Xt.loc["P2", ["ap", "pvp", "dp"]].isna().all()
    assert all(np.isfinite(voxels(Xt.loc["P1", p])).all() for p in PHASES)

    cropper = LargestSliceCropper(size=8, on_error="skip")
    with pytest.warns(SkippedCaseWarning, match="skipped 1 of 2 cases.*crops are NaN.*'P2'"):
        crops = cropper.fit_transform(X)
    assert list(cropper.skipped_.index) == ["P2"] and cropper.skipped_.loc["P2", "column"] == column
    assert re_search(message, cropper.skipped_.loc["P2", "reason"])
    assert np.isnan(crops[1]).all() and np.isfinite(crops[0]).all()
    np.testing.assert_array_equal(
        crops[0], LargestSliceCropper(size=8).fit_transform(X.loc[["P1"]])[0]
    )
    # A clean run resets the record.
    cropper.fit_transform(X.loc[["P1"]])
    assert cropper.skipped_.empty


@pytest.mark.parametrize(
    "values, settings, message",
    [
        # negative everywhere (not constant: a constant image is refused before N4, see below)
        (lambda a: -50.0 - a / 100, {}, "N4 needs positive intensities"),
        # two values, air and body: the body foreground is constant, the image is not
        (lambda a: np.where(a > 100, 7.0, 1.0), {"bias_correction": False}, "constant in its body"),
    ],
)
def test_images_n4_or_normalisation_cannot_handle_name_patient_and_column(
    values, settings, message, phantom, assert_located
):
    image, mask = phantom()
    image = sitk.GetImageFromArray(values(sitk.GetArrayFromImage(image)).astype(np.float32))
    image.CopyInformation(mask)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P9"])
    with pytest.raises(CohortError, match=message) as excinfo:
        N4Resampler(phases=("ap",), **settings, **FAST).fit_transform(X)
    assert_located(excinfo, "P9", "ap")


def test_non_finite_in_memory_image_names_patient_and_column(phantom, assert_located):
    image, mask = phantom()
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = np.nan
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    X = pd.DataFrame({"ap": [image], "pvp": [bad], "mask": [mask]}, index=["P7"])
    for step in (N4Resampler(phases=("ap", "pvp"), **FAST), LargestSliceCropper(("ap", "pvp"))):
        with pytest.raises(CohortError, match=r"1 NaN and 0 infinite .*index \(0, 0, 0\)") as exc:
            step.fit_transform(X)
        assert_located(exc, "P7", "pvp")
