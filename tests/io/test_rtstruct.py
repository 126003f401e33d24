"""RTSTRUCT masks (issue 16, item 2): pydicom's real RTSTRUCT parsed, and round trips of synthetic
masks through an RTSTRUCT written with pydicom (contours by marching squares)."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.exceptions import CohortError
from p53radiomics.io import load_case, read_mask


def _grid(origin, size, spacing):
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    return image


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_real_rtstruct_rectangles(shared_data):
    """ROI 'patient': three 400 x 300 mm rectangles at z = -200, -190, -180; on a 10-mm grid whose
    voxel faces lie on the rectangles' edges, exactly 40 x 30 voxels per slice."""
    path = str(shared_data / "dicom" / "pydicom_rtstruct.dcm")
    grid = _grid((-245.0, -195.0, -200.0), (50, 40, 3), (10.0, 10.0, 10.0))
    mask = sitk.GetArrayFromImage(read_mask(path + "#roi=patient", reference=grid))
    assert mask.sum(axis=(1, 2)).tolist() == [1200, 1200, 1200]
    assert mask[:, 5:35, 5:45].all()
    same = sitk.GetArrayFromImage(read_mask(path, reference=grid, roi="PATIENT"))  # case ignored
    np.testing.assert_array_equal(mask, same)


def test_real_rtstruct_errors(shared_data, assert_located):
    path = str(shared_data / "dicom" / "pydicom_rtstruct.dcm")
    grid = _grid((-245.0, -195.0, -200.0), (50, 40, 3), (10.0, 10.0, 10.0))
    names = r"its ROIs: 'patient', 'Isocenter 1', 'Isocenter 2'"
    with pytest.raises(CohortError, match=r"no ROI named 'GTV'; " + names) as e:
        read_mask(path + "#roi=GTV", reference=grid, patient_id="P1", column="ap_mask")
    assert_located(e, "P1", "ap_mask")
    with pytest.raises(CohortError, match=r"holds 3 ROIs \('patient', 'Isocenter 1'"):
        read_mask(path, reference=grid)
    with pytest.raises(CohortError, match="ROI 'Isocenter 1' .* is a POINT ROI .*not a region"):
        read_mask(path + "#roi=Isocenter 1", reference=grid)
    with pytest.raises(CohortError, match="holds contours, not voxels"):
        read_mask(path + "#roi=patient")
    with pytest.raises(CohortError, match="'#segment=' does not apply to .*an RTSTRUCT"):
        read_mask(path + "#segment=1", reference=grid)
    off_plane = _grid((-245.0, -195.0, -205.0), (50, 40, 4), (10.0, 10.0, 10.0))
    with pytest.raises(
        CohortError,
        match=r"contour 1 of ROI 'patient' .* not on one of the image's slice planes: .* 5 mm",
    ):
        read_mask(path + "#roi=patient", reference=off_plane)
    small = _grid((-145.0, -195.0, -200.0), (30, 40, 3), (10.0, 10.0, 10.0))
    with pytest.raises(CohortError, match="lies outside the image"):
        read_mask(path + "#roi=patient", reference=small)


def test_even_odd_holes(tmp_path, write_rtstruct, make_volume):
    """A ring (a contour inside another, on one slice) is the ring, not the filled disc."""
    image = make_volume(size=(20, 20, 3), spacing=(1.0, 1.0, 2.0))
    z, y, x = np.mgrid[0:3, 0:20, 0:20]
    r = np.hypot(x - 9.5, y - 9.5)
    ring = ((r <= 8) & (r > 4) & (z == 1)).astype(np.uint8)
    path = write_rtstruct(image, [ring], tmp_path / "rt.dcm", names=["ring"])
    mask = sitk.GetArrayFromImage(read_mask(str(path), reference=image))
    np.testing.assert_array_equal(mask, ring)  # two contours on slice 1, the inner one a hole


def test_round_trip_dice_and_features(synthetic_dicom_case, write_rtstruct, tmp_path):
    """Dice of the rasterised RTSTRUCT against the label image (issue 16's figure, printed), and
    the features of both end to end through N4Resampler and RadiomicsExtractor."""
    from sklearn.pipeline import make_pipeline

    from p53radiomics import N4Resampler, RadiomicsExtractor

    folder, image, label = synthetic_dicom_case
    labels = sitk.GetArrayFromImage(label)
    path = write_rtstruct(
        image, [labels == 1, labels == 2], tmp_path / "rt.dcm", names=["GTV", "other"]
    )
    X = pd.DataFrame(
        {"ap": [str(folder), image], "ap_mask": [f"{path}#roi=GTV", label == 1]},
        index=["rt", "nii"],
    )
    _, mask = load_case(X, "rt", phases=("ap",))["ap"]
    dice = _dice(sitk.GetArrayFromImage(mask) > 0, labels == 1)
    print(f"RTSTRUCT rasterisation: Dice {dice:.4f} ({int((labels == 1).sum())} voxels)")
    assert dice >= 0.95
    params = {
        "setting": {"binCount": 16},
        "imageType": {"Original": {}},
        "featureClass": {"firstorder": None, "shape": None},
    }
    pipeline = make_pipeline(
        N4Resampler(phases=("ap",), shrink_factor=2, n_iterations=(10, 10), margin_mm=5.0),
        RadiomicsExtractor(phases=("ap",), params=params),
    )
    features = pipeline.fit_transform(X)
    a, b = features.loc["rt"].to_numpy(), features.loc["nii"].to_numpy()
    difference = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))
    print(f"RTSTRUCT vs label image: max relative feature difference {difference:.3g}")
    if dice == 1.0:
        assert difference == 0.0
