"""The same anatomy gives the same preprocessed voxels and crops, whatever its storage.

- N4Resampler: the same voxel array with another direction matrix (oblique by 0.1, 1 or 35 degrees,
  a flipped axis) or another origin gives bit-for-bit the same output voxels (tolerance 0), the
  output keeps the input's direction and lies where the input's ROI lies, and the radiomics
  features of the outputs are the same;
- LargestSliceCropper: the same anatomy stored LPS, RAS, with one flipped axis or with permuted
  axes (coronal or sagittal storage) gives identical crops, in the radiological view.

Every case goes through NIfTI files written with SimpleITK, as a hospital export would.
"""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from p53radiomics import RadiomicsExtractor
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler

FAST = {"n_iterations": (20, 20)}
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _rotation(degrees, axis=(0.3, 0.5, 1.0)):
    """Direction matrix (row-major tuple) of a rotation by `degrees` about `axis`."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    return tuple(Rotation.from_rotvec(np.deg2rad(degrees) * axis).as_matrix().ravel())


def _write(X, folder):
    """The table with every image cell written to a NIfTI file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    X = X.copy()
    for column in X.columns:
        for pid in X.index:
            path = folder / f"{pid}_{column}.nii.gz"
            sitk.WriteImage(X.at[pid, column], str(path))
            X.at[pid, column] = str(path)
    return X


def _biased_case(size=(32, 30, 12), spacing=(0.74, 0.74, 3.0), seed=0):
    """Voxel arrays (z, y, x) of a body with a liver, a tumour, noise and a smooth bias field."""
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size, spacing, strict=True)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    half = [n * s / 2 for n, s in zip(size, spacing, strict=True)]
    body = (x / (0.9 * half[0])) ** 2 + (y / (0.9 * half[1])) ** 2 < 1
    liver = ((x + 2.0) / 6.0) ** 2 + (y / 5.0) ** 2 + (z / 14.0) ** 2 < 1
    tumour = (x + 3.0) ** 2 + (y - 1.0) ** 2 + (z / 2.5) ** 2 < 3.5**2
    array = np.where(body, 250.0, 8.0) + np.where(liver & body, 150.0, 0.0)
    array = np.where(tumour, 550.0, array) + rng.normal(0.0, 12.0, size=array.shape)
    field = 0.4 * x / half[0] - 0.3 * (y / half[1]) ** 2 + 0.15 * z / half[2]
    array = np.clip(array, 1.0, None) * np.exp(field)
    return array.astype(np.float32), tumour.astype(np.uint8)


def _stored(array, mask, direction, origin=(-120.0, 85.0, -40.0), spacing=(0.74, 0.74, 3.0)):
    image, roi = sitk.GetImageFromArray(array), sitk.GetImageFromArray(mask)
    for im in (image, roi):
        im.SetSpacing(spacing)
        im.SetOrigin(origin)
        im.SetDirection(direction)
    return image, roi


STORAGES = {
    "oblique 0.1 deg": {"direction": _rotation(0.1)},
    "oblique 1 deg": {"direction": _rotation(1.0)},
    "oblique 35 deg": {"direction": _rotation(35.0, axis=(1.0, -2.0, 0.5))},
    "x axis flipped": {"direction": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
    "origin moved": {"direction": IDENTITY, "origin": (3.5, -250.25, 1000.0)},
}


def _preprocess(tmp_path, name, array, mask, step, **storage):
    image, roi = _stored(array, mask, **storage)
    X = _write(pd.DataFrame({"ap": [image], "mask": [roi]}, index=["P1"]), tmp_path / name)
    Xt = step.fit_transform(X)
    return X, Xt.loc["P1", "ap"], Xt.loc["P1", "ap_mask"]


def _centroid(mask):
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask, sitk.sitkUInt8))
    return np.asarray(stats.GetCentroid(1))


@pytest.mark.parametrize("spacing", [(0.74, 0.74, 3.0), (1.0, 1.0, 3.0)])
@pytest.mark.parametrize("storage", list(STORAGES))
def test_n4resampler_output_voxels_do_not_depend_on_direction_or_origin(tmp_path, storage, spacing):
    """Shrinking by 4 (an even factor) picked other voxels for N4 at some tilts: another bias field,
    z-scores off by up to 0.3 units. Now the voxels are equal bit for bit, and so is the mask."""
    array, mask = _biased_case(spacing=spacing)
    step = N4Resampler(phases=("ap",), margin_mm=6.0, **FAST)
    _, ref_image, ref_mask = _preprocess(
        tmp_path, "axial", array, mask, step, direction=IDENTITY, spacing=spacing
    )
    X, image, out_mask = _preprocess(
        tmp_path, "other", array, mask, step, spacing=spacing, **STORAGES[storage]
    )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ref_image))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(out_mask), sitk.GetArrayFromImage(ref_mask)
    )
    # The output keeps the input's direction and lies where the input lies.
    source = sitk.ReadImage(X.loc["P1", "ap"])
    assert image.GetSpacing() == (1.0, 1.0, 1.0) and image.GetSize() == ref_image.GetSize()
    np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(out_mask.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(
        _centroid(out_mask), _centroid(sitk.ReadImage(X.loc["P1", "mask"])), atol=1.0
    )


def test_radiomics_features_do_not_depend_on_direction(tmp_path):
    """The radiomics features of the preprocessed volumes are equal (tolerance 0) at 0 and 1 degree."""
    array, mask = _biased_case()
    step = N4Resampler(phases=("ap",), margin_mm=6.0, **FAST)
    params = {
        "imageType": {"Original": {}},
        "featureClass": {"shape": ["VoxelVolume"], "firstorder": ["Mean", "Entropy"]},
        "setting": {"binWidth": 0.05},
    }
    features = []
    for name, direction in (("axial", IDENTITY), ("oblique", _rotation(1.0))):
        _, image, roi = _preprocess(tmp_path, name, array, mask, step, direction=direction)
        X = pd.DataFrame({"ap": [image], "ap_mask": [roi]}, index=["P1"])
        features.append(RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X))
    pd.testing.assert_frame_equal(features[0], features[1], check_exact=True)


# ------------------------------------------------------------------------- LargestSliceCropper
def _anatomy():
    """An LPS-stored case (identity direction): image, mask and the world point of a marker.

    The voxel at index (x, y, z) holds ``x + 7 y + 50 z``, so no two in-plane positions look
    alike; the tumour is a box around index (10, 8, 4), and a bright marker sits in the tumour's
    box at its patient-right (low x), anterior (low y) corner.
    """
    size, spacing = (24, 18, 9), (0.8, 1.1, 2.5)
    z, y, x = np.mgrid[: size[2], : size[1], : size[0]].astype(np.float32)
    array = x + 7 * y + 50 * z
    array[4, 5, 7] = 2000.0  # the marker: x = 7 (right of the tumour), y = 5 (anterior)
    mask = np.zeros(array.shape, dtype=np.uint8)
    mask[3:6, 5:12, 7:14] = 1
    mask[4, 4:13, 6:15] = 1  # slice 4 is the largest
    image, roi = sitk.GetImageFromArray(array), sitk.GetImageFromArray(mask)
    for im in (image, roi):
        im.SetSpacing(spacing)
        im.SetOrigin((-40.0, 25.0, 110.0))
    return image, roi, image.TransformIndexToPhysicalPoint((7, 5, 4))


def _restored(image, flips=(False, False, False), order=(0, 1, 2)):
    """The same anatomy stored otherwise: voxel axes flipped, then permuted (new axis i is old
    axis ``order[i]``), with spacing, direction and origin changed so every voxel keeps its
    physical position."""
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis=2 - axis)
    array = np.ascontiguousarray(np.transpose(array, [2 - order[i] for i in (2, 1, 0)]))
    direction = np.asarray(image.GetDirection()).reshape(3, 3) * np.where(flips, -1.0, 1.0)
    last = [s - 1 if f else 0 for s, f in zip(image.GetSize(), flips, strict=True)]
    out = sitk.GetImageFromArray(array)
    out.SetSpacing([image.GetSpacing()[i] for i in order])
    out.SetDirection(direction[:, list(order)].ravel().tolist())
    out.SetOrigin(image.TransformIndexToPhysicalPoint(last))
    return out


CROPPER_STORAGES = {
    "LPS": {},
    "RAS": {"flips": (True, True, False)},
    "x flipped": {"flips": (True, False, False)},
    "coronal (x, z, y)": {"order": (0, 2, 1)},
    "sagittal, flipped (y, z, x)": {"flips": (False, True, True), "order": (1, 2, 0)},
}


@pytest.mark.parametrize("context_slices", [0, 1])
def test_cropper_gives_the_same_crop_whatever_the_storage_order(tmp_path, context_slices):
    image, mask, marker = _anatomy()
    crops = {}
    for k, (name, storage) in enumerate(CROPPER_STORAGES.items()):
        stored_image, stored_mask = _restored(image, **storage), _restored(mask, **storage)
        # the storage is right: the marker voxel is still at the marker's world point
        index = stored_image.TransformPhysicalPointToIndex(marker)
        assert stored_image[index] == 2000.0, name
        X = _write(
            pd.DataFrame({"ap": [stored_image], "mask": [stored_mask]}, index=["P1"]),
            tmp_path / f"storage{k}",
        )
        cropper = LargestSliceCropper(
            phases=("ap",), margin=2, size=24, context_slices=context_slices, normalization=None
        )
        crops[name] = cropper.fit_transform(X)[0]
    for name, crop in crops.items():
        np.testing.assert_array_equal(crop, crops["LPS"], err_msg=name)


def test_cropper_crops_are_in_the_radiological_view(tmp_path):
    """Rows anterior to posterior, columns patient's right to left; 2.5D slices inferior to superior.

    The case is stored RAS (x to the patient's right, y to anterior): without orienting, the crop
    would be mirrored in both directions.
    """
    image, mask, _ = _anatomy()
    ras = {"flips": (True, True, False)}
    X = _write(
        pd.DataFrame({"ap": [_restored(image, **ras)], "mask": [_restored(mask, **ras)]}),
        tmp_path,
    )
    size = 48
    crop = LargestSliceCropper(
        phases=("ap",), margin=2, size=size, context_slices=1, normalization=None
    ).fit_transform(X)[0]
    centre = crop[1]
    row, col = np.unravel_index(np.argmax(centre), centre.shape)
    assert centre[row, col] > 1000  # the marker, right of and anterior to the tumour ...
    assert row < size / 2 and col < size / 2, (row, col)  # ... is in the top-left quarter
    # Away from the marker, values (x + 7 y + 50 z) grow to the patient's left along a row and to
    # posterior down a column ...
    quarter = slice(size // 2, None)
    assert (np.diff(centre[quarter, quarter], axis=1) > 0).all()
    assert (np.diff(centre[quarter, quarter], axis=0) > 0).all()
    # ... and by 50 a slice to superior: the 2.5D slices run inferior to superior.
    for lower, upper in ((0, 1), (1, 2)):
        np.testing.assert_allclose(
            crop[upper][quarter, quarter] - crop[lower][quarter, quarter], 50.0, atol=1e-3
        )
