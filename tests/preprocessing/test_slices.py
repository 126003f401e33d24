"""LargestSliceCropper: the largest slice and its square crop around the ROI, the channel order,
2.5D context slices, the z-score, its parameters, n_jobs (with on_error), and the image-level
estimator checks.

Test volumes are tiny phantoms (``phantom`` and ``phantom_cohort`` in ``conftest.py``) and
slice-coded images made here, whose voxel values tell the slice and the in-plane position a crop
came from.
"""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.exceptions import CohortError, SkippedCaseWarning
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler
from p53radiomics.preprocessing._slices import largest_slice
from p53radiomics.utils.estimator_checks import check_image_estimator

PHASES = ("ap", "pvp", "dp")
FAST = {"n_iterations": (20, 20)}  # enough for tiny phantoms; keeps the module fast


# --------------------------------------------------------------------- LargestSliceCropper
def test_cropper_picks_the_largest_slice_and_orders_channels(phantom):
    image, mask = phantom(size=(20, 20, 6), spacing=(1.0, 1.0, 2.0), radius_mm=0.1)
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
def test_cropper_is_centred_square_and_keeps_the_aspect_ratio(spacing, margin, phantom):
    """Cropping the mask itself: the ROI sits in the middle, and a round ROI stays round."""
    image, mask = phantom(
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


def test_cropper_zscores_each_crop_and_reads_preprocessed_tables(tmp_path, phantom_cohort):
    X = phantom_cohort(n=2, folder=tmp_path / "in")
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


def test_cropper_context_slices_phase_major_with_edge_replication(tmp_path, write_images):
    """2.5D: the k slices on each side of each phase's largest slice, as channels, phase after
    phase, lowest slice first; past an end of the volume the end slice is repeated. Read from
    NIfTI files through SimpleITK."""
    image = _slice_coded_case()
    X = write_images(
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


def test_cropper_parameters(phantom_cohort):
    X = phantom_cohort(n=1)
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
def test_cropper_n_jobs_2_equals_n_jobs_1(tmp_path, on_disk, phantom_cohort):
    """The patients cropped in worker processes give the same crops, bit for bit, as in one."""
    X = phantom_cohort(n=3, folder=tmp_path / "in" if on_disk else None)
    settings = {"size": 16, "margin": 2, "context_slices": 1}
    one = LargestSliceCropper(n_jobs=1, **settings).fit_transform(X)
    two = LargestSliceCropper(n_jobs=2, **settings).fit_transform(X)
    assert one.dtype == two.dtype == np.float32 and one.shape == two.shape == (3, 9, 16, 16)
    assert one.tobytes() == two.tobytes()


def test_cropper_n_jobs_keeps_on_error(tmp_path, bad_cohort, assert_located):
    """Under n_jobs=2 a bad case raises naming its patient and column, or is skipped alike."""
    X, column = bad_cohort(tmp_path, "empty mask")
    with pytest.raises(CohortError) as excinfo:
        LargestSliceCropper(size=8, n_jobs=2).fit_transform(X)
    assert_located(excinfo, "P2", column)
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


@pytest.mark.parametrize("on_disk", [False, True])
def test_check_image_estimator_largest_slice_cropper(tmp_path, on_disk, phantom_cohort):
    X = phantom_cohort(n=2, folder=tmp_path / "in" if on_disk else None)
    check_image_estimator(LargestSliceCropper(size=16), X)
    check_image_estimator(LargestSliceCropper(size=16, context_slices=1), X)
