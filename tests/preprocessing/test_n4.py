"""N4Resampler: output geometry, bias removal, the crop around the ROI, normalisation, its
parameters, the per-case cache, n_jobs, the real abdominal MR, verbose output, and the image-level
estimator checks.

Test volumes are tiny phantoms (``phantom`` and ``phantom_cohort`` in ``conftest.py``: a body, a
spherical tumour, noise, an optional smooth multiplicative field), so the whole module runs in well
under a minute. Bad inputs, for both preprocessing steps, are in ``test_bad_inputs.py``.
"""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.exceptions import CohortError
from p53radiomics.io import check_geometry, read_image
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler
from p53radiomics.utils.estimator_checks import assert_same_output, check_image_estimator

PHASES = ("ap", "pvp", "dp")
FAST = {"n_iterations": (20, 20)}  # enough for tiny phantoms; keeps the module fast


def _roi_volume_mm3(mask):
    return int(sitk.GetArrayViewFromImage(read_image(mask)).astype(bool).sum()) * float(
        np.prod(read_image(mask).GetSpacing())
    )


# ------------------------------------------------------------------------------- N4Resampler
@pytest.mark.parametrize(
    "spacing, expected",
    [
        ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
        (1.5, (1.5, 1.5, 1.5)),
        ((0.8, 0.9, 2.5), (0.8, 0.9, 2.5)),
    ],
)
@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)])
def test_exact_output_spacing_and_masks_aligned(spacing, expected, direction, phantom_cohort):
    X = phantom_cohort(n=1, direction=direction)
    Xt = N4Resampler(spacing=spacing, **FAST).fit_transform(X)
    for phase in PHASES:
        image, mask = Xt.loc["P1", phase], Xt.loc["P1", f"{phase}_mask"]
        assert image.GetSpacing() == expected
        assert image.GetPixelID() == sitk.sitkFloat32 and mask.GetPixelID() == sitk.sitkUInt8
        assert check_geometry(image, mask, tolerance=1e-9) is None
        np.testing.assert_allclose(image.GetDirection(), direction)
        assert set(np.unique(sitk.GetArrayViewFromImage(mask))) == {0, 1}


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 0.7), (3.0, 3.0, 1.0)])
def test_roi_physical_volume_preserved(spacing, phantom):
    image, mask = phantom(radius_mm=10.0)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    Xt = N4Resampler(phases=("ap",), spacing=spacing, bias_correction=False).fit_transform(X)
    before, after = _roi_volume_mm3(mask), _roi_volume_mm3(Xt.loc["P1", "ap_mask"])
    assert abs(after - before) / before < 0.10, (before, after)


def test_masks_stay_on_the_roi_after_resampling(phantom, voxels):
    """The resampled mask covers the bright tumour of the resampled image."""
    image, mask = phantom(radius_mm=10.0)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    Xt = N4Resampler(phases=("ap",), bias_correction=False, normalization=None).fit_transform(X)
    out, roi = voxels(Xt.loc["P1", "ap"]), voxels(Xt.loc["P1", "ap_mask"]).astype(bool)
    assert out[roi].mean() > 280 and np.median(out[~roi]) < 220


def test_known_bias_field_removed(phantom, voxels):
    """A smooth multiplicative field on a homogeneous phantom: the CV in the body is at least halved."""
    image, _ = phantom(
        size=(40, 40, 16), spacing=(2.0, 2.0, 3.0), radius_mm=0.1, seed=3,
        log_field=lambda x, y, z: 0.45 * x / 40.0 - 0.3 * (y / 40.0) ** 2 + 0.1 * z / 24.0,
    )  # fmt: skip
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[18:22, 18:22, 6:10] = 1
    body = sitk.GetArrayFromImage(
        sitk.BinaryErode(sitk.TriangleThreshold(image, 0, 1, 256), [2, 2, 1])
    ).astype(bool)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    step = N4Resampler(
        phases=("ap",), shrink_factor=2, spacing=None, margin_mm=None, normalization=None
    )
    corrected = voxels(step.fit_transform(X).loc["P1", "ap"])

    def cv(a):
        return a[body].std() / a[body].mean()

    before, after = cv(sitk.GetArrayFromImage(image)), cv(corrected)
    assert after <= before / 2, (before, after)
    assert after < 0.05


def test_crop_is_centred_on_the_roi_with_the_margin(phantom):
    image, mask = phantom(
        size=(40, 40, 16), spacing=(1.5, 1.5, 3.0), centre_mm=(6.0, -6.0, 3.0), radius_mm=6.0
    )
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    margin = 9.0
    out_mask = (
        N4Resampler(phases=("ap",), margin_mm=margin, **FAST).fit_transform(X).loc["P1", "ap_mask"]
    )
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    roi_centre = np.asarray(stats.GetCentroid(1))
    index = (np.asarray(out_mask.GetSize()) - 1) / 2
    grid_centre = np.asarray(out_mask.TransformContinuousIndexToPhysicalPoint(index.tolist()))
    # Centred up to the voxel the margin is rounded to on each side.
    np.testing.assert_allclose(grid_centre, roi_centre, atol=max(image.GetSpacing()))
    # Extent: the ROI's bounding box (whole voxels) plus the margin on each side, rounded to voxels.
    bbox_mm = np.asarray(stats.GetBoundingBox(1)[3:]) * image.GetSpacing()
    extent = np.asarray(out_mask.GetSize()) * out_mask.GetSpacing()
    assert np.all(extent >= bbox_mm + 2 * margin - 1e-6)
    assert np.all(extent <= bbox_mm + 2 * margin + 2 * np.asarray(image.GetSpacing()))


def test_margin_none_keeps_the_whole_volume_and_margin_is_clipped(phantom):
    image, mask = phantom()
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    whole = (
        N4Resampler(phases=("ap",), margin_mm=None, spacing=None, **FAST)
        .fit_transform(X)
        .loc["P1", "ap"]
    )
    assert whole.GetSize() == image.GetSize() and whole.GetOrigin() == image.GetOrigin()
    huge = (
        N4Resampler(phases=("ap",), margin_mm=1000.0, spacing=None, **FAST)
        .fit_transform(X)
        .loc["P1", "ap"]
    )
    assert huge.GetSize() == image.GetSize()


def test_zscore_statistics_come_from_the_body_foreground_of_the_whole_volume(phantom, voxels):
    """Without N4 and shrinking, the body foreground (triangle threshold) of the input has mean 0 and SD 1 in the output,
    whatever the crop: the ROI is not the reference."""
    image, mask = phantom()
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    settings = {"phases": ("ap",), "bias_correction": False, "shrink_factor": 1, "spacing": None}
    whole = voxels(N4Resampler(margin_mm=None, **settings).fit_transform(X).loc["P1", "ap"])
    body = sitk.GetArrayFromImage(sitk.TriangleThreshold(image, 0, 1, 256)).astype(bool)
    assert abs(whole[body].mean()) < 1e-5 and abs(whole[body].std() - 1) < 1e-5
    cropped = voxels(N4Resampler(margin_mm=4.0, **settings).fit_transform(X).loc["P1", "ap"])
    roi = sitk.GetArrayFromImage(mask).astype(bool)
    np.testing.assert_allclose(
        np.sort(cropped.ravel())[-5:], np.sort(whole[roi].ravel())[-5:], rtol=1e-6
    )

    percentile = N4Resampler(
        margin_mm=None, normalization="percentile", percentiles=(5, 95), **settings
    )
    out = voxels(percentile.fit_transform(X).loc["P1", "ap"])
    np.testing.assert_allclose(np.percentile(out[body], [5, 95]), [0.0, 1.0], atol=1e-5)
    raw = (
        N4Resampler(margin_mm=None, normalization=None, **settings).fit_transform(X).loc["P1", "ap"]
    )
    np.testing.assert_array_equal(voxels(raw), sitk.GetArrayFromImage(image))


def test_bspline_interpolation_and_transform_without_fit(phantom_cohort):
    X = phantom_cohort(n=1, phases=("ap",))
    step = N4Resampler(phases=("ap",), interpolation="bspline", **FAST)
    assert step.__sklearn_tags__().requires_fit is False
    Xt = step.transform(X)  # stateless: no fit needed
    assert Xt.loc["P1", "ap"].GetSpacing() == (1.0, 1.0, 1.0)
    assert not hasattr(step, "feature_names_in_")


def test_output_table_columns_index_and_feature_names(phantom_cohort):
    X = phantom_cohort(n=2)
    step = N4Resampler(**FAST).fit(X)
    Xt = step.transform(X)
    expected = ["ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask", "ltd"]
    assert list(Xt.columns) == expected and list(step.get_feature_names_out()) == expected
    assert Xt.index.equals(X.index)
    assert Xt["ltd"].tolist() == X["ltd"].tolist()
    own = phantom_cohort(n=1, shared_mask=False)
    assert list(N4Resampler(**FAST).fit_transform(own).columns) == list(own.columns)
    assert list(N4Resampler(phases=("ap",)).get_feature_names_out(["ap", "mask", "pvp"])) == [
        "ap",
        "ap_mask",
        "pvp",
    ]


def test_set_output_in_a_pipeline(phantom_cohort):
    X = phantom_cohort(n=1, phases=("ap",))
    pipe = Pipeline(
        [
            ("pre", N4Resampler(phases=("ap",), **FAST)),
            ("crop", LargestSliceCropper(phases=("ap",), size=16)),
        ]
    )
    pipe.set_output(transform="pandas")
    assert pipe.fit_transform(X).shape == (1, 1, 16, 16)


@pytest.mark.parametrize(
    "params",
    [
        {"spacing": (1.0, 1.0)},
        {"spacing": (1.0, -1.0, 1.0)},
        {"spacing": "1mm"},
        {"n_iterations": ()},
        {"n_iterations": (10, 0)},
        {"shrink_factor": 0},
        {"percentiles": (90, 10)},
        {"normalization": "minmax"},
        {"margin_mm": -1.0},
        {"interpolation": "cubic"},
        {"on_error": "ignore"},
        {"phases": "ap"},
    ],
)
def test_invalid_parameters_are_rejected(params, phantom_cohort):
    X = phantom_cohort(n=1)
    step = N4Resampler(**params)
    assert step.get_params()[next(iter(params))] == next(iter(params.values()))  # stored unchanged
    for method in (step.fit, step.transform):
        with pytest.raises((InvalidParameterError, ValueError, TypeError)):
            method(X)


# ------------------------------------------------------------------------- cache and n_jobs
def test_cache_second_run_computes_nothing(tmp_path, monkeypatch, phantom_cohort):
    X = phantom_cohort(n=2, folder=tmp_path / "in")
    step = N4Resampler(cache_dir=tmp_path / "cache", **FAST)
    first = step.fit_transform(X)
    assert (step.cache_hits_, step.cache_misses_) == (0, 6)
    assert all(
        str(cell).startswith(str(tmp_path / "cache"))
        for cell in first[["ap", "ap_mask"]].to_numpy().ravel()
    )
    entries = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.nrrd")}
    assert len(entries) == 12 and not list((tmp_path / "cache").rglob("*.tmp*"))

    import p53radiomics.preprocessing._n4 as n4

    def fail(*args, **kwargs):
        raise AssertionError("a cached case was computed again")

    monkeypatch.setattr(n4, "_preprocess_item", fail)
    second = N4Resampler(cache_dir=tmp_path / "cache", **FAST).fit(X)
    assert_same_output(first, second.transform(X))
    assert (second.cache_hits_, second.cache_misses_) == (6, 0)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.nrrd")} == entries

    # Keyed by contents, not paths: a copy of the inputs elsewhere hits.
    shutil.copytree(tmp_path / "in", tmp_path / "moved")
    moved = X.map(
        lambda c: (
            c.replace(str(tmp_path / "in"), str(tmp_path / "moved")) if isinstance(c, str) else c
        )
    )
    assert_same_output(first, N4Resampler(cache_dir=tmp_path / "cache", **FAST).transform(moved))


def test_cache_misses_on_other_settings_and_matches_in_memory(tmp_path, phantom_cohort):
    X = phantom_cohort(n=1)  # in-memory images are keyed by pixels and geometry
    cached = N4Resampler(cache_dir=tmp_path / "cache", **FAST)
    out = cached.fit_transform(X)
    assert_same_output(out, N4Resampler(**FAST).fit_transform(X), rtol=1e-6, atol=1e-6)
    other = N4Resampler(cache_dir=tmp_path / "cache", spacing=2.0, **FAST)
    other.fit_transform(X)
    assert (other.cache_hits_, other.cache_misses_) == (0, 3)
    # An unused setting (percentiles without percentile normalisation) does not change the key.
    same = N4Resampler(cache_dir=tmp_path / "cache", percentiles=(2, 98), **FAST)
    same.fit_transform(X)
    assert (same.cache_hits_, same.cache_misses_) == (3, 0)


def test_n_jobs_2_equals_n_jobs_1(tmp_path, phantom_cohort, bad_cohort, assert_located):
    X = phantom_cohort(n=2, folder=tmp_path / "in")
    threads = sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()
    one = N4Resampler(n_jobs=1, **FAST).fit_transform(X)
    two = N4Resampler(n_jobs=2, **FAST).fit_transform(X)
    assert_same_output(one, two)  # SimpleITK runs on one thread per case either way
    assert sitk.ProcessObject_GetGlobalDefaultNumberOfThreads() == threads  # restored
    with pytest.raises(CohortError) as excinfo:
        N4Resampler(n_jobs=2, **FAST).fit_transform(
            bad_cohort(tmp_path / "bad", "several labels")[0]
        )
    assert_located(excinfo, "P2", "dp_mask")


# ------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def abdominal_mr(shared_data):
    folder = shared_data / "abdominal_mr"
    image, mask = folder / "example_mr_sm.nii.gz", folder / "example_seg_roi_subset_mr.nii.gz"
    if not image.is_file() or not mask.is_file():
        pytest.skip(f"abdominal MR not found in {folder}")
    return pd.DataFrame({"ap": [str(image)], "mask": [str(mask)]}, index=["mr"])


def test_real_abdominal_mr(abdominal_mr, tmp_path):
    step = N4Resampler(phases=("ap",), cache_dir=tmp_path / "cache")
    check = check_image_estimator  # the input folder must stay untouched, as on synthetic data
    check(N4Resampler(phases=("ap",), n_iterations=(10,), margin_mm=10.0), abdominal_mr)
    Xt = step.fit_transform(abdominal_mr)
    image, mask = read_image(Xt.loc["mr", "ap"]), read_image(Xt.loc["mr", "ap_mask"])
    assert (
        image.GetSpacing() == (1.0, 1.0, 1.0)
        and check_geometry(image, mask, tolerance=1e-9) is None
    )
    before = _roi_volume_mm3(abdominal_mr.loc["mr", "mask"])
    assert abs(_roi_volume_mm3(mask) - before) / before < 0.10
    liver = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) > 0]
    assert np.isfinite(liver).all()
    low, high = np.percentile(liver, [1, 99])
    # A z-scored organ spans a few units: what the radiomics grey-level discretisation is sized for.
    assert 0.5 < high - low < 10, (low, high)

    crops = LargestSliceCropper(phases=("ap",), size=64).fit_transform(Xt)
    raw = LargestSliceCropper(phases=("ap",), size=64).fit_transform(abdominal_mr)
    assert (
        crops.shape == raw.shape == (1, 1, 64, 64)
        and np.isfinite(crops).all()
        and np.isfinite(raw).all()
    )


# ------------------------------------------------------------------ image-level estimator checks
@pytest.mark.parametrize("on_disk", [False, True])
def test_check_image_estimator_n4resampler(tmp_path, on_disk, phantom_cohort):
    X = phantom_cohort(n=2, folder=tmp_path / "in" if on_disk else None)
    check_image_estimator(N4Resampler(**FAST), X)
    check_image_estimator(N4Resampler(cache_dir=tmp_path / "cache", **FAST), X)


def test_steps_in_a_function_pipeline_leave_inputs_alone(tmp_path, phantom_cohort):
    """Through a Pipeline with another step, the inputs are still untouched (no files written)."""
    X = phantom_cohort(n=1, folder=tmp_path / "in")
    before = sorted(os.listdir(tmp_path / "in"))
    pipe = Pipeline(
        [
            ("pre", N4Resampler(**FAST)),
            ("id", FunctionTransformer()),
            ("crop", LargestSliceCropper(size=8)),
        ]
    )
    assert pipe.fit_transform(X).shape == (1, 3, 8, 8)
    assert sorted(os.listdir(tmp_path / "in")) == before


def test_verbose_shows_progress_and_logs_cache_use(tmp_path, capsys, caplog, phantom_cohort):
    X = phantom_cohort(n=1, phases=("ap",))
    step = N4Resampler(phases=("ap",), cache_dir=tmp_path / "cache", verbose=1, **FAST)
    with caplog.at_level("INFO", logger="p53radiomics.preprocessing._n4"):
        step.fit_transform(X)
    assert "N4Resampler" in capsys.readouterr().err  # the tqdm bar
    assert "0 of 1 (case, phase) pairs read from the cache" in caplog.text
    LargestSliceCropper(phases=("ap",), size=8, verbose=1).fit_transform(X)
    assert "LargestSliceCropper" in capsys.readouterr().err
