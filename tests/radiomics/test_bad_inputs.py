"""Bad inputs to RadiomicsExtractor (DESIGN §7): a missing, unreadable or empty cell, an empty
or multi-label mask, a geometry mismatch (within and beyond io's tolerance), a single-voxel ROI, an
unknown phase, repeated ids, a feature or filter PyRadiomics cannot compute. Each is raised with a
CohortError naming the patient and the column, or skipped under on_error="skip", warned and
recorded, also inside a pipeline and alike in N4Resampler.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from p53radiomics.exceptions import CohortError, SkippedCaseWarning
from p53radiomics.radiomics import (
    RadiomicsExtractor,
)

# --------------------------------------------------------------------------------------------------
# Bad inputs (DESIGN §7)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def broken_cohort(tumour_cohort):
    """``broken_cohort(case, folder)``: a cohort of 3 patients (in `folder`) in which patient
    P001's phase 'pvp' has the problem `case` (a key of ``_BAD_INPUTS``); returns ``(X, the
    column at fault)``."""

    def break_case(case, folder):
        """Cohort of 3 patients in which patient P001's phase 'pvp' has the problem `case`."""
        X = tumour_cohort(3, folder=folder)
        mask = sitk.ReadImage(X.at["P001", "pvp_mask"])
        column = "pvp_mask"
        if case == "missing file":
            X.at["P001", "pvp"], column = str(folder / "nowhere.nii.gz"), "pvp"
        elif case == "unreadable file":
            (folder / "text.nii.gz").write_text("not an image")
            X.at["P001", "pvp"], column = str(folder / "text.nii.gz"), "pvp"
        elif case == "empty cell":
            X.at["P001", "pvp"], column = None, "pvp"
        elif case == "empty mask":
            X.at["P001", "pvp_mask"] = mask * 0
        elif case == "geometry":
            mask.SetOrigin((5.0, 0.0, 0.0))
            X.at["P001", "pvp_mask"] = mask
        elif case == "several labels":
            mask[9, 9, 9] = 2
            X.at["P001", "pvp_mask"] = mask
        elif case == "single-voxel ROI":
            single = mask * 0
            single[9, 9, 9] = 1
            X.at["P001", "pvp_mask"], column = single, "pvp"
        return X, column

    return break_case


_BAD_INPUTS = {
    "missing file": "file not found",
    "unreadable file": "cannot read image",
    "empty cell": "the cell is empty",
    "empty mask": "mask is empty",
    "geometry": "do not share geometry: origin differs",
    "several labels": "mask holds 2 labels",
    "single-voxel ROI": r"PyRadiomics failed on phase 'pvp': ValueError: .*(1 segmented voxel|dimension)",
}


@pytest.mark.parametrize("case", _BAD_INPUTS)
def test_bad_input_raises_with_patient_and_column(case, tmp_path, small_params, broken_cohort):
    X, column = broken_cohort(case, tmp_path)
    with pytest.raises(CohortError, match=_BAD_INPUTS[case]) as info:
        RadiomicsExtractor(phases=("ap", "pvp"), params=small_params).fit_transform(X)
    assert info.value.patient_id == "P001" and info.value.column == column
    assert str(info.value).startswith(f"patient 'P001', column '{column}': ")


# A parameter set without PyRadiomics's correctMask, whose own geometry check then applies.
_STRICT_PARAMS = {
    "featureClass": {"firstorder": ["Mean", "Entropy"], "glcm": ["Idmn"]},
    "setting": {"binCount": 16},
}


def _shifted(mask, offset):
    shifted = sitk.Image(mask)
    shifted.SetOrigin(tuple(o + offset for o in mask.GetOrigin()))
    return shifted


@pytest.mark.parametrize("params", [_STRICT_PARAMS, None], ids=["strict", "study"])
def test_mask_within_the_geometry_tolerance_gives_the_exact_masks_features(
    params, tmp_path, tumour
):
    """Defect 8 of issue 13: a mask 1e-5 mm off passed validate_cohort, then PyRadiomics refused
    it ("geometry mismatch", blaming the image column). One tolerance now: io's."""
    from p53radiomics.io import validate_cohort

    image, mask = tumour(3, spacing=(0.8, 0.8, 3.0))
    sitk.WriteImage(_shifted(mask, -1e-5), str(tmp_path / "mask.nii.gz"))
    X = pd.DataFrame(
        {"ap": [image] * 3, "mask": [mask, _shifted(mask, 1e-5), str(tmp_path / "mask.nii.gz")]},
        index=["exact", "shifted", "file"],
    )
    validate_cohort(X, phases=("ap",))
    if params is None:  # the study's whole set on one case is slow: one row is enough
        X = X.loc[["shifted"]]
    features = RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)
    reference = RadiomicsExtractor(phases=("ap",), params=params).fit_transform(
        pd.DataFrame({"ap": [image], "mask": [mask]}, index=["exact"])
    )
    for patient in features.index:
        np.testing.assert_array_equal(features.loc[patient], reference.loc["exact"])


def test_mask_beyond_the_geometry_tolerance_is_refused_alike_everywhere(tumour):
    from p53radiomics.io import GEOMETRY_TOLERANCE, validate_cohort

    image, mask = tumour(4, spacing=(0.8, 0.8, 3.0))
    X = pd.DataFrame(
        {"ap": [image], "mask": [_shifted(mask, 1.5 * GEOMETRY_TOLERANCE * 0.8)]}, index=["P7"]
    )
    with pytest.raises(CohortError, match="origin differs") as validated:
        validate_cohort(X, phases=("ap",))
    with pytest.raises(CohortError) as extracted:
        RadiomicsExtractor(phases=("ap",), params=_STRICT_PARAMS).fit_transform(X)
    assert str(extracted.value) == str(validated.value)
    assert (extracted.value.patient_id, extracted.value.column) == ("P7", "mask")
    assert "tolerated: 0.0008 mm, 0.001 of the smallest voxel spacing" in str(extracted.value)


@pytest.mark.parametrize("case", ["missing file", "several labels", "single-voxel ROI"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_bad_input_is_skipped_warned_and_recorded(
    case, n_jobs, tmp_path, small_params, n_small, broken_cohort
):
    X, column = broken_cohort(case, tmp_path)
    extractor = RadiomicsExtractor(
        phases=("ap", "pvp"),
        params=small_params,
        on_error="skip",
        n_jobs=n_jobs,
        cache_dir=tmp_path / "cache",
    )
    with pytest.warns(SkippedCaseWarning, match=r"skipped 1 of 6 .*patient 'P001', phase 'pvp'"):
        features = extractor.fit_transform(X)
    assert features.shape == (3, 2 * n_small)
    assert features.loc["P001"].filter(like="pvp_").isna().all()
    assert np.isfinite(features.drop(index="P001").to_numpy()).all()
    assert np.isfinite(features.loc["P001"].filter(like="ap_").to_numpy()).all()
    skipped = extractor.skipped_
    assert skipped.index.tolist() == ["P001"] and skipped.index.name == "patient_id"
    assert skipped[["phase", "column"]].to_numpy().tolist() == [["pvp", column]]
    assert re.search(_BAD_INPUTS[case], skipped.at["P001", "reason"])
    # a clean run records nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedCaseWarning)
        extractor.fit_transform(X.drop(index="P001"))
    assert extractor.skipped_.empty


def test_n4_and_radiomics_report_a_skipped_case_and_cache_hits_alike(
    tmp_path, tumour_cohort, small_params
):
    """Both steps run the one case loop: a failed case and the cache's hits are reported alike."""
    import p53radiomics
    from p53radiomics.preprocessing import N4Resampler
    from p53radiomics.utils._cohort_step import CohortStep

    (tmp_path / "in").mkdir()
    X = tumour_cohort(2, folder=tmp_path / "in")
    empty = sitk.ReadImage(X.at["P001", "pvp_mask"]) * 0
    sitk.WriteImage(empty, str(tmp_path / "in" / "empty_mask.nii.gz"))
    X.at["P001", "pvp_mask"] = str(tmp_path / "in" / "empty_mask.nii.gz")
    steps = {
        "N4Resampler": N4Resampler(phases=("ap", "pvp"), bias_correction=False, spacing=None),
        "RadiomicsExtractor": RadiomicsExtractor(phases=("ap", "pvp"), params=small_params),
    }
    warned_from = set()  # both warn from the same frame: the caller of transform
    for name, step in steps.items():
        assert isinstance(step, CohortStep)
        step.set_params(on_error="skip", cache_dir=tmp_path / "cache" / name)
        for run, (hits, misses) in enumerate([(0, 4), (3, 1)]):  # a failure is not cached
            fitted = clone(step)
            with pytest.warns(SkippedCaseWarning, match=f"^{name} skipped 1 of") as record:
                fitted.fit_transform(X)
            assert len(record) == 1, name
            warned_from.add((record[0].filename, record[0].lineno))
            assert (fitted.cache_hits_, fitted.cache_misses_) == (hits, misses), (name, run)
            assert fitted.skipped_.index.tolist() == ["P001"], name
            assert fitted.skipped_.at["P001", "column"] == "pvp_mask", name
            assert "mask is empty" in fitted.skipped_.at["P001", "reason"], name
    ((filename, _),) = warned_from
    assert not Path(filename).is_relative_to(Path(p53radiomics.__file__).parent)


def test_unknown_phase_and_repeated_ids(tumour_cohort, small_params):
    X = tumour_cohort(2)
    with pytest.raises(CohortError, match="unknown phase 'dp'"):
        RadiomicsExtractor(params=small_params).fit(X)
    with pytest.raises(CohortError, match="unknown phase 'dp'"):
        RadiomicsExtractor(params=small_params, on_error="skip").transform(X)
    with pytest.raises(CohortError, match="patient ids must be unique"):
        RadiomicsExtractor(phases=("ap",), params=small_params).transform(pd.concat([X, X]))
    with pytest.raises(TypeError, match="DataFrame"):
        RadiomicsExtractor(phases=("ap",), params=small_params).transform(X.to_numpy())


def test_a_feature_pyradiomics_cannot_compute_is_never_a_silent_nan(
    monkeypatch, tumour_cohort, small_params
):
    """PyRadiomics logs an error and returns NaN when a feature fails: here it is raised or skipped."""
    from radiomics import firstorder

    def broken(self):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(firstorder.RadiomicsFirstOrder, "getKurtosisFeatureValue", broken)
    X = tumour_cohort(2, phases=("ap",))
    with pytest.raises(
        CohortError,
        match=r"could not compute 10 features .*Kurtosis.*PyRadiomics said: ZeroDivisionError: boom",
    ):
        RadiomicsExtractor(phases=("ap",), params=small_params).fit_transform(X)
    with pytest.warns(SkippedCaseWarning, match="skipped 2 of 2"):
        features = RadiomicsExtractor(
            phases=("ap",), params=small_params, on_error="skip"
        ).fit_transform(X)
    assert features.isna().all().all()


def test_a_filter_pyradiomics_declines_is_reported(tumour_cohort):
    """A LoG sigma too large for the cropped image: PyRadiomics warns and leaves its features out."""
    params = {
        "imageType": {"LoG": {"sigma": [30.0]}},
        "featureClass": {"firstorder": ["Mean"]},
        "setting": {"padDistance": 0, "preCrop": True},
    }
    X = tumour_cohort(1, phases=("ap",))
    with pytest.raises(
        CohortError,
        match=r"returned no value for 1 of 1 features .*log-sigma-30-0-mm-3D.*PyRadiomics said: applyLoG",
    ):
        RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)


def test_in_a_pipeline_with_skipped_cases(
    tmp_path, tumour_cohort, small_params, n_small, broken_cohort
):
    X, _ = broken_cohort("several labels", tmp_path)
    X = pd.concat([X, tumour_cohort(3, folder=tmp_path, seed=50).rename(index=lambda i: f"Q{i}")])
    y = np.array([0, 1, 0, 1, 0, 1])
    pipeline = make_pipeline(
        RadiomicsExtractor(phases=("ap", "pvp"), params=small_params, on_error="skip"),
        SimpleImputer(),
        LogisticRegression(max_iter=1000),
    ).set_output(transform="pandas")
    with pytest.warns(SkippedCaseWarning):
        pipeline.fit(X, y)
    assert pipeline[0].skipped_.index.tolist() == ["P001"]
    with pytest.warns(SkippedCaseWarning):
        assert pipeline.predict_proba(X).shape == (6, 2)
    assert pipeline[:-1].get_feature_names_out().size == 2 * n_small
