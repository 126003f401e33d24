"""N4Resampler and LargestSliceCropper: geometry, bias removal, crops, the real abdominal MR, bad
inputs, on_error="skip", the per-case cache, n_jobs, and the image-level estimator checks.

Test volumes are tiny phantoms made here with SimpleITK (a body, a spherical tumour, noise, an
optional smooth multiplicative field), so the whole module runs in well under a minute.
"""

import os
import shutil
import warnings
from re import search as re_search

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.exceptions import CohortError, SkippedCaseWarning
from p53radiomics.io import check_geometry, read_image
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler
from p53radiomics.preprocessing._slices import largest_slice
from p53radiomics.utils.estimator_checks import assert_same_output, check_image_estimator

PHASES = ("ap", "pvp", "dp")
FAST = {"n_iterations": (20, 20)}  # enough for tiny phantoms; keeps the module fast


# -------------------------------------------------------------------------------------- helpers
def _phantom(
    size=(24, 22, 10),
    spacing=(2.0, 2.0, 4.0),
    origin=(-20.0, 15.0, 40.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
    centre_mm=(4.0, -2.0, 0.0),
    radius_mm=9.0,
    log_field=None,
    seed=0,
):
    """A body ellipsoid (200) with a spherical tumour (300) in air (about 5), plus noise.

    Positions are in mm from the volume's centre, along the voxel axes. `log_field` maps the
    coordinate arrays ``(x, y, z)`` (mm, z-y-x broadcast) to a log multiplicative field.
    Returns ``(image, mask)``: float32 and uint8 images with the given geometry.
    """
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size, spacing, strict=True)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    half = [n * s / 2 for n, s in zip(size, spacing, strict=True)]
    body = (x / (0.85 * half[0])) ** 2 + (y / (0.85 * half[1])) ** 2 < 1
    tumour = (x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (
        z - centre_mm[2]
    ) ** 2 < radius_mm**2
    array = np.where(body, 200.0, 5.0) + np.where(tumour, 100.0, 0.0)
    array = np.abs(array + rng.normal(0.0, 3.0, size=array.shape))
    if log_field is not None:
        array = array * np.exp(log_field(x, y, z))
    image = sitk.GetImageFromArray(array.astype(np.float32))
    mask = sitk.GetImageFromArray(tumour.astype(np.uint8))
    for im in (image, mask):
        im.SetSpacing(spacing)
        im.SetOrigin(origin)
        im.SetDirection(direction)
    return image, mask


def _cohort(n=3, phases=PHASES, shared_mask=True, folder=None, **kwargs):
    """A cohort table of phantoms (one per patient, the phases scaled differently), in memory or on disk."""
    rows = {}
    for i in range(n):
        pid = f"P{i + 1}"
        image, mask = _phantom(seed=i, centre_mm=(4.0 - 2 * i, -2.0 + i, 0.0), **kwargs)
        row = {phase: image * (1.0 + 0.5 * k) for k, phase in enumerate(phases)}
        if shared_mask:
            row["mask"] = mask
        else:
            row.update({f"{phase}_mask": mask for phase in phases})
        row["ltd"] = 30.0 + i
        rows[pid] = row
    X = pd.DataFrame.from_dict(rows, orient="index")
    return X if folder is None else _write(X, folder)


def _write(X, folder):
    """The same table with every image cell written to a file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    X = X.copy()
    for column in X.columns:
        for pid in X.index:
            cell = X.at[pid, column]
            if isinstance(cell, sitk.Image):
                path = folder / f"{pid}_{column}.nii.gz"
                sitk.WriteImage(cell, str(path))
                X.at[pid, column] = str(path)
    return X


def _array(cell):
    return sitk.GetArrayFromImage(read_image(cell))


def _roi_volume_mm3(mask):
    return int(sitk.GetArrayViewFromImage(read_image(mask)).astype(bool).sum()) * float(
        np.prod(read_image(mask).GetSpacing())
    )


def _error(excinfo, patient_id, column):
    err = excinfo.value
    assert err.patient_id == patient_id and err.column == column, str(err)
    assert repr(patient_id) in str(err) and repr(column) in str(err)


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
def test_exact_output_spacing_and_masks_aligned(spacing, expected, direction):
    X = _cohort(n=1, direction=direction)
    Xt = N4Resampler(spacing=spacing, **FAST).fit_transform(X)
    for phase in PHASES:
        image, mask = Xt.loc["P1", phase], Xt.loc["P1", f"{phase}_mask"]
        assert image.GetSpacing() == expected
        assert image.GetPixelID() == sitk.sitkFloat32 and mask.GetPixelID() == sitk.sitkUInt8
        assert check_geometry(image, mask, tolerance=1e-9) is None
        np.testing.assert_allclose(image.GetDirection(), direction)
        assert set(np.unique(sitk.GetArrayViewFromImage(mask))) == {0, 1}


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 0.7), (3.0, 3.0, 1.0)])
def test_roi_physical_volume_preserved(spacing):
    image, mask = _phantom(radius_mm=10.0)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    Xt = N4Resampler(phases=("ap",), spacing=spacing, bias_correction=False).fit_transform(X)
    before, after = _roi_volume_mm3(mask), _roi_volume_mm3(Xt.loc["P1", "ap_mask"])
    assert abs(after - before) / before < 0.10, (before, after)


def test_masks_stay_on_the_roi_after_resampling():
    """The resampled mask covers the bright tumour of the resampled image."""
    image, mask = _phantom(radius_mm=10.0)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    Xt = N4Resampler(phases=("ap",), bias_correction=False, normalization=None).fit_transform(X)
    out, roi = _array(Xt.loc["P1", "ap"]), _array(Xt.loc["P1", "ap_mask"]).astype(bool)
    assert out[roi].mean() > 280 and np.median(out[~roi]) < 220


def test_known_bias_field_removed():
    """A smooth multiplicative field on a homogeneous phantom: the CV in the body is at least halved."""
    image, _ = _phantom(
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
    corrected = _array(step.fit_transform(X).loc["P1", "ap"])

    def cv(a):
        return a[body].std() / a[body].mean()

    before, after = cv(sitk.GetArrayFromImage(image)), cv(corrected)
    assert after <= before / 2, (before, after)
    assert after < 0.05


def test_crop_is_centred_on_the_roi_with_the_margin():
    image, mask = _phantom(
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


def test_margin_none_keeps_the_whole_volume_and_margin_is_clipped():
    image, mask = _phantom()
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


def test_zscore_statistics_come_from_the_body_foreground_of_the_whole_volume():
    """Without N4 and shrinking, the body foreground (triangle threshold) of the input has mean 0 and SD 1 in the output,
    whatever the crop: the ROI is not the reference."""
    image, mask = _phantom()
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    settings = {"phases": ("ap",), "bias_correction": False, "shrink_factor": 1, "spacing": None}
    whole = _array(N4Resampler(margin_mm=None, **settings).fit_transform(X).loc["P1", "ap"])
    body = sitk.GetArrayFromImage(sitk.TriangleThreshold(image, 0, 1, 256)).astype(bool)
    assert abs(whole[body].mean()) < 1e-5 and abs(whole[body].std() - 1) < 1e-5
    cropped = _array(N4Resampler(margin_mm=4.0, **settings).fit_transform(X).loc["P1", "ap"])
    roi = sitk.GetArrayFromImage(mask).astype(bool)
    np.testing.assert_allclose(
        np.sort(cropped.ravel())[-5:], np.sort(whole[roi].ravel())[-5:], rtol=1e-6
    )

    percentile = N4Resampler(
        margin_mm=None, normalization="percentile", percentiles=(5, 95), **settings
    )
    out = _array(percentile.fit_transform(X).loc["P1", "ap"])
    np.testing.assert_allclose(np.percentile(out[body], [5, 95]), [0.0, 1.0], atol=1e-5)
    raw = (
        N4Resampler(margin_mm=None, normalization=None, **settings).fit_transform(X).loc["P1", "ap"]
    )
    np.testing.assert_array_equal(_array(raw), sitk.GetArrayFromImage(image))


def test_bspline_interpolation_and_transform_without_fit():
    X = _cohort(n=1, phases=("ap",))
    step = N4Resampler(phases=("ap",), interpolation="bspline", **FAST)
    assert step.__sklearn_tags__().requires_fit is False
    Xt = step.transform(X)  # stateless: no fit needed
    assert Xt.loc["P1", "ap"].GetSpacing() == (1.0, 1.0, 1.0)
    assert not hasattr(step, "feature_names_in_")


def test_output_table_columns_index_and_feature_names():
    X = _cohort(n=2)
    step = N4Resampler(**FAST).fit(X)
    Xt = step.transform(X)
    expected = ["ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask", "ltd"]
    assert list(Xt.columns) == expected and list(step.get_feature_names_out()) == expected
    assert Xt.index.equals(X.index)
    assert Xt["ltd"].tolist() == X["ltd"].tolist()
    own = _cohort(n=1, shared_mask=False)
    assert list(N4Resampler(**FAST).fit_transform(own).columns) == list(own.columns)
    assert list(N4Resampler(phases=("ap",)).get_feature_names_out(["ap", "mask", "pvp"])) == [
        "ap",
        "ap_mask",
        "pvp",
    ]


def test_set_output_in_a_pipeline():
    X = _cohort(n=1, phases=("ap",))
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
def test_invalid_parameters_are_rejected(params):
    X = _cohort(n=1)
    step = N4Resampler(**params)
    assert step.get_params()[next(iter(params))] == next(iter(params.values()))  # stored unchanged
    for method in (step.fit, step.transform):
        with pytest.raises((InvalidParameterError, ValueError, TypeError)):
            method(X)


# --------------------------------------------------------------------------------- bad inputs
def _bad_cohort(tmp_path, problem):
    """A 2-patient cohort on disk whose patient P2 has `problem`; returns (X, the column at fault)."""
    X = _cohort(n=2, shared_mask=False, folder=tmp_path / "in")
    if problem == "missing file":
        X.at["P2", "pvp"] = str(tmp_path / "in" / "nowhere.nii.gz")
        return X, "pvp"
    if problem == "unreadable file":
        bad = tmp_path / "in" / "broken.nii.gz"
        bad.write_bytes(b"not an image")
        X.at["P2", "pvp"] = str(bad)
        return X, "pvp"
    if problem == "empty cell":
        X.at["P2", "pvp"] = None
        return X, "pvp"
    if problem in ("NaN voxel", "infinite voxel", "constant image"):
        image = read_image(X.at["P2", "pvp"])
        array = sitk.GetArrayFromImage(image)
        if problem == "constant image":
            array[:] = 180.0
        else:
            array[3, 5, 7] = np.nan if problem == "NaN voxel" else -np.inf
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(image)
        # NRRD: ITK 5's NIfTI reader turns NaN and inf into 0 as it reads (nifti_read_buffer)
        path = tmp_path / "in" / f"bad_{problem.replace(' ', '_')}.nrrd"
        sitk.WriteImage(bad, str(path))
        X.at["P2", "pvp"] = str(path)
        return X, "pvp"
    mask = read_image(X.at["P2", "dp_mask"])
    if problem == "empty mask":
        mask = mask * 0
    elif problem == "several labels":
        mask[1, 1, 1] = 2
    elif problem == "geometry mismatch":
        mask.SetSpacing((2.0, 2.0, 5.0))
    path = tmp_path / "in" / f"bad_{problem.replace(' ', '_')}.nii.gz"
    sitk.WriteImage(mask, str(path))
    X.at["P2", "dp_mask"] = str(path)
    return X, "dp_mask"


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
def test_bad_inputs_name_patient_and_column(tmp_path, problem, cache):
    X, column = _bad_cohort(tmp_path, problem)
    step = N4Resampler(cache_dir=tmp_path / "cache" if cache else None, **FAST)
    with pytest.raises(CohortError) as excinfo:
        step.fit_transform(X)
    _error(excinfo, "P2", column)


@pytest.mark.parametrize("problem", BAD_INPUTS)
def test_bad_inputs_name_patient_and_column_in_the_cropper(tmp_path, problem):
    X, column = _bad_cohort(tmp_path, problem)
    with pytest.raises(CohortError) as excinfo:
        LargestSliceCropper(size=8).fit_transform(X)
    _error(excinfo, "P2", column)


@pytest.mark.parametrize(
    "step", [N4Resampler(phases=("ap", "t2")), LargestSliceCropper(phases=("ap", "t2"))]
)
def test_unknown_phase_is_named(step):
    with pytest.raises(CohortError, match="unknown phase 't2'"):
        step.fit(_cohort(n=1))


def test_on_error_skip_goes_on_and_records(tmp_path):
    X, _ = _bad_cohort(tmp_path, "empty mask")
    X = pd.concat(
        [X, _cohort(n=1, shared_mask=False, folder=tmp_path / "more").rename(index={"P1": "P3"})]
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
def test_non_finite_and_constant_images_are_refused_or_skipped(tmp_path, problem):
    """They used to pass through: NaN in the volumes and crops, a constant image "normalised" to
    values in [-1.6, 3.2] by N4. Now both steps refuse them, or skip them under on_error="skip"."""
    X, column = _bad_cohort(tmp_path, problem)
    message = (
        "constant" if problem == "constant image" else "NaN and 0 infinite|0 NaN and 1 infinite"
    )
    for step in (N4Resampler(**FAST), LargestSliceCropper(size=8)):
        with pytest.raises(CohortError, match=message) as excinfo:
            step.fit_transform(X)
        _error(excinfo, "P2", column)

    n4 = N4Resampler(on_error="skip", **FAST)
    with pytest.warns(SkippedCaseWarning, match="skipped 1 of 2 cases.*'P2'"):
        Xt = n4.fit_transform(X)
    assert list(n4.skipped_.index) == ["P2"] and n4.skipped_.loc["P2", "column"] == column
    assert Xt.loc["P2", ["ap", "pvp", "dp"]].isna().all()
    assert all(np.isfinite(_array(Xt.loc["P1", p])).all() for p in PHASES)

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


# ------------------------------------------------------------------------- cache and n_jobs
def test_cache_second_run_computes_nothing(tmp_path, monkeypatch):
    X = _cohort(n=2, folder=tmp_path / "in")
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


def test_cache_misses_on_other_settings_and_matches_in_memory(tmp_path):
    X = _cohort(n=1)  # in-memory images are keyed by pixels and geometry
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


def test_n_jobs_2_equals_n_jobs_1(tmp_path):
    X = _cohort(n=2, folder=tmp_path / "in")
    threads = sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()
    one = N4Resampler(n_jobs=1, **FAST).fit_transform(X)
    two = N4Resampler(n_jobs=2, **FAST).fit_transform(X)
    assert_same_output(one, two)  # SimpleITK runs on one thread per case either way
    assert sitk.ProcessObject_GetGlobalDefaultNumberOfThreads() == threads  # restored
    with pytest.raises(CohortError) as excinfo:
        N4Resampler(n_jobs=2, **FAST).fit_transform(
            _bad_cohort(tmp_path / "bad", "several labels")[0]
        )
    _error(excinfo, "P2", "dp_mask")


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


# --------------------------------------------------------------------- LargestSliceCropper
def test_cropper_picks_the_largest_slice_and_orders_channels():
    image, mask = _phantom(size=(20, 20, 6), spacing=(1.0, 1.0, 2.0), radius_mm=0.1)
    mask = mask * 0
    mask[5:9, 5:9, 1] = 1
    mask[4:12, 4:10, 4] = 1  # the largest
    mask[6:8, 6:8, 5] = 1
    assert largest_slice(mask) == 4
    slice_index = sitk.GetImageFromArray(
        np.broadcast_to(np.arange(6.0)[:, None, None], (6, 20, 20)).astype(np.float32)
    )
    slice_index.CopyInformation(mask)
    X = pd.DataFrame(
        {"ap": [slice_index], "pvp": [slice_index * 10.0], "mask": [mask]}, index=["P1"]
    )
    crops = LargestSliceCropper(phases=("pvp", "ap"), size=12, normalization=None).fit_transform(X)
    assert crops.shape == (1, 2, 12, 12) and crops.dtype == np.float32
    np.testing.assert_allclose(crops[0, 0], 40.0)
    np.testing.assert_allclose(crops[0, 1], 4.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 2.0), (0.5, 1.0, 2.0)])
@pytest.mark.parametrize("margin", [0, 5])
def test_cropper_is_centred_square_and_keeps_the_aspect_ratio(spacing, margin):
    """Cropping the mask itself: the ROI sits in the middle, and a round ROI stays round."""
    image, mask = _phantom(
        size=(60, 40, 8), spacing=spacing, centre_mm=(-5.0, 4.0, 0.0), radius_mm=8.0
    )
    X = pd.DataFrame({"ap": [sitk.Cast(mask, sitk.sitkFloat32)], "mask": [mask]}, index=["P1"])
    size = 64
    crop = LargestSliceCropper(
        phases=("ap",), margin=margin, size=size, normalization=None
    ).fit_transform(X)[0, 0]
    inside = crop > 0.5
    rows, cols = np.nonzero(inside)
    np.testing.assert_allclose([rows.mean(), cols.mean()], [(size - 1) / 2] * 2, atol=1.0)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(height - width) <= 2  # round in mm, so round in the crop
    # The ROI's longer side spans the crop less the margin on both sides.
    k = largest_slice(mask)
    roi = sitk.GetArrayViewFromImage(mask)[k]
    r, c = np.nonzero(roi)
    side_px = {"x": c.max() - c.min() + 1, "y": r.max() - r.min() + 1}
    side_mm = max(
        (side_px["x"] + 2 * margin) * spacing[0], (side_px["y"] + 2 * margin) * spacing[1]
    )
    expected = size * max(side_px["x"] * spacing[0], side_px["y"] * spacing[1]) / side_mm
    assert abs(max(height, width) - expected) <= 3, (height, width, expected)


def test_cropper_zscores_each_crop_and_reads_preprocessed_tables(tmp_path):
    X = _cohort(n=2, folder=tmp_path / "in")
    crops = LargestSliceCropper(size=32).fit_transform(X)
    assert crops.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(crops.mean(axis=(2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(crops.std(axis=(2, 3)), 1.0, atol=1e-4)
    for cache_dir in (None, tmp_path / "cache"):
        Xt = N4Resampler(cache_dir=cache_dir, **FAST).fit_transform(X)
        out = LargestSliceCropper(size=32).fit_transform(Xt)
        assert out.shape == (2, 3, 32, 32) and np.isfinite(out).all()


def _slice_coded_case(n_slices=7, side=20, spacing=(1.0, 1.0, 2.0)):
    """An image whose voxel (z, y, x) holds 100 z + x + 0.5 y: the slice is read off a crop's level,
    and the in-plane position off its pattern."""
    z, y, x = np.mgrid[:n_slices, :side, :side].astype(np.float32)
    image = sitk.GetImageFromArray(100 * z + x + 0.5 * y)
    image.SetSpacing(spacing)
    return image


def _mask_on(image, largest, smaller=()):
    """A mask with its largest ROI on slice `largest` and a smaller one on each of `smaller`."""
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[4:12, 5:11, largest] = 1
    for k in smaller:
        mask[6:9, 6:9, k] = 1
    return mask


def test_cropper_context_slices_phase_major_with_edge_replication(tmp_path):
    """2.5D: the k slices on each side of each phase's largest slice, as channels, phase after
    phase, lowest slice first; past an end of the volume the end slice is repeated. Read from
    NIfTI files through SimpleITK."""
    image = _slice_coded_case()
    X = _write(
        pd.DataFrame(
            {
                "ap": [image],
                "ap_mask": [_mask_on(image, 3, smaller=(2, 4))],  # well inside: slices 1..5
                "pvp": [image * 2.0],
                "pvp_mask": [_mask_on(image, 6, smaller=(5,))],  # the top slice: 4, 5, 6, 6, 6
                "dp": [image],
                "dp_mask": [_mask_on(image, 0)],  # the bottom slice: 0, 0, 0, 1, 2
            },
            index=["P1"],
        ),
        tmp_path / "in",
    )
    k = 2
    cropper = LargestSliceCropper(size=16, margin=1, context_slices=k, normalization=None)
    crops = cropper.fit_transform(X)
    assert crops.shape == (1, 3 * (2 * k + 1), 16, 16) and crops.dtype == np.float32
    # The slice of each channel, read off its level (in-plane values stay below 100 here).
    slices = np.floor(crops[0].min(axis=(1, 2)) / 100).astype(int)
    slices[5:10] = np.floor(crops[0, 5:10].min(axis=(1, 2)) / 200).astype(int)  # pvp is doubled
    np.testing.assert_array_equal(slices, [1, 2, 3, 4, 5, 4, 5, 6, 6, 6, 0, 0, 0, 1, 2])
    # Every slice of a phase goes through the same square: the same in-plane pattern.
    pattern = crops[0] - 100 * slices[:, None, None] * np.repeat([1, 2, 1], 5)[:, None, None]
    for phase in range(3):
        block = pattern[5 * phase : 5 * phase + 5] / [1, 2, 1][phase]
        np.testing.assert_allclose(block, np.broadcast_to(block[0], block.shape), atol=1e-3)
    # The centre channel of each phase is the single-slice crop.
    flat = LargestSliceCropper(size=16, margin=1, normalization=None).fit_transform(X)
    np.testing.assert_array_equal(crops[0, [2, 7, 12]], flat[0])


def test_cropper_context_slices_zscore_per_phase_over_its_slices():
    image = _slice_coded_case()
    X = pd.DataFrame(
        {"ap": [image], "pvp": [image * 3.0 + 7.0], "mask": [_mask_on(image, 3)]}, index=["P1"]
    )
    crops = LargestSliceCropper(phases=("ap", "pvp"), size=16, context_slices=1).fit_transform(X)
    assert crops.shape == (1, 6, 16, 16)
    phases = crops.reshape(1, 2, 3, 16, 16)
    np.testing.assert_allclose(phases.mean(axis=(2, 3, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(phases.std(axis=(2, 3, 4)), 1.0, atol=1e-4)
    # One scale per phase keeps the contrast between slices: the lower slice stays darker.
    levels = phases.mean(axis=(3, 4))[0]
    assert (np.diff(levels, axis=1) > 0).all()
    np.testing.assert_allclose(phases[0, 0], phases[0, 1], atol=1e-4)  # same after the z-score


def test_cropper_parameters():
    X = _cohort(n=1)
    for params in (
        {"margin": -1},
        {"size": 0},
        {"normalization": "minmax"},
        {"context_slices": -1},
        {"context_slices": 1.5},
        {"on_error": "ignore"},
        {"n_jobs": 1.5},
    ):
        with pytest.raises(InvalidParameterError):
            LargestSliceCropper(**params).fit(X)
    step = LargestSliceCropper()
    assert step.__sklearn_tags__().requires_fit is False
    assert step.set_output(transform="pandas") is step


@pytest.mark.parametrize("on_disk", [False, True])
def test_cropper_n_jobs_2_equals_n_jobs_1(tmp_path, on_disk):
    """The patients cropped in worker processes give the same crops, bit for bit, as in one."""
    X = _cohort(n=3, folder=tmp_path / "in" if on_disk else None)
    settings = {"size": 16, "margin": 2, "context_slices": 1}
    one = LargestSliceCropper(n_jobs=1, **settings).fit_transform(X)
    two = LargestSliceCropper(n_jobs=2, **settings).fit_transform(X)
    assert one.dtype == two.dtype == np.float32 and one.shape == two.shape == (3, 9, 16, 16)
    assert one.tobytes() == two.tobytes()


def test_cropper_n_jobs_keeps_on_error(tmp_path):
    """Under n_jobs=2 a bad case raises naming its patient and column, or is skipped alike."""
    X, column = _bad_cohort(tmp_path, "empty mask")
    with pytest.raises(CohortError) as excinfo:
        LargestSliceCropper(size=8, n_jobs=2).fit_transform(X)
    _error(excinfo, "P2", column)
    crops, records = {}, {}
    for n_jobs in (1, 2):
        step = LargestSliceCropper(size=8, on_error="skip", n_jobs=n_jobs)
        with pytest.warns(SkippedCaseWarning, match="skipped 1 of 2 cases.*'P2'.*mask is empty"):
            crops[n_jobs] = step.fit_transform(X)
        records[n_jobs] = step.skipped_
    assert np.isnan(crops[2][1]).all() and np.isfinite(crops[2][0]).all()
    assert crops[1].tobytes() == crops[2].tobytes()
    pd.testing.assert_frame_equal(records[1], records[2])
    assert records[2].loc["P2", "column"] == column


# ------------------------------------------------------------------ image-level estimator checks
@pytest.mark.parametrize("on_disk", [False, True])
def test_check_image_estimator_n4resampler(tmp_path, on_disk):
    X = _cohort(n=2, folder=tmp_path / "in" if on_disk else None)
    check_image_estimator(N4Resampler(**FAST), X)
    check_image_estimator(N4Resampler(cache_dir=tmp_path / "cache", **FAST), X)


@pytest.mark.parametrize("on_disk", [False, True])
def test_check_image_estimator_largest_slice_cropper(tmp_path, on_disk):
    X = _cohort(n=2, folder=tmp_path / "in" if on_disk else None)
    check_image_estimator(LargestSliceCropper(size=16), X)
    check_image_estimator(LargestSliceCropper(size=16, context_slices=1), X)


def test_steps_in_a_function_pipeline_leave_inputs_alone(tmp_path):
    """Through a Pipeline with another step, the inputs are still untouched (no files written)."""
    X = _cohort(n=1, folder=tmp_path / "in")
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


def test_verbose_shows_progress_and_logs_cache_use(tmp_path, capsys, caplog):
    X = _cohort(n=1, phases=("ap",))
    step = N4Resampler(phases=("ap",), cache_dir=tmp_path / "cache", verbose=1, **FAST)
    with caplog.at_level("INFO", logger="p53radiomics.preprocessing._n4"):
        step.fit_transform(X)
    assert "N4Resampler" in capsys.readouterr().err  # the tqdm bar
    assert "0 of 1 (case, phase) pairs read from the cache" in caplog.text
    LargestSliceCropper(phases=("ap",), size=8, verbose=1).fit_transform(X)
    assert "LargestSliceCropper" in capsys.readouterr().err


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
    values, settings, message
):
    image, mask = _phantom()
    image = sitk.GetImageFromArray(values(sitk.GetArrayFromImage(image)).astype(np.float32))
    image.CopyInformation(mask)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P9"])
    with pytest.raises(CohortError, match=message) as excinfo:
        N4Resampler(phases=("ap",), **settings, **FAST).fit_transform(X)
    _error(excinfo, "P9", "ap")


def test_non_finite_in_memory_image_names_patient_and_column():
    image, mask = _phantom()
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = np.nan
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    X = pd.DataFrame({"ap": [image], "pvp": [bad], "mask": [mask]}, index=["P7"])
    for step in (N4Resampler(phases=("ap", "pvp"), **FAST), LargestSliceCropper(("ap", "pvp"))):
        with pytest.raises(CohortError, match=r"1 NaN and 0 infinite .*index \(0, 0, 0\)") as exc:
            step.fit_transform(X)
        _error(exc, "P7", "pvp")
