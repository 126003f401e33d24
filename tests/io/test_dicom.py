"""A DICOM series folder read as one volume, from its headers and its pixels: the slices put in
slice order, and every layout that is not one evenly spaced volume refused, naming the patient,
the column and the gap."""

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.io import load_case, read_image, validate_cohort


def _series_table(folder, mask, pid="P4"):
    """A one-patient table whose ``ap`` image is the DICOM folder."""
    return pd.DataFrame({"ap": [str(folder)], "mask": [mask]}, index=[pid])


def test_read_image_dicom_series_folder(tmp_path, make_volume, write_dicom_series):
    image = make_volume(spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.1")
    read = read_image(tmp_path / "series")
    assert read.GetSize() == image.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), rtol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


def test_dicom_folder_with_two_series_or_none_is_an_error(
    tmp_path, make_volume, mask_like, assert_located, write_dicom_series
):
    write_dicom_series(make_volume(), tmp_path / "two", "1.2.3.4.1", description="t1 vibe arterial")
    write_dicom_series(make_volume(seed=1, size=(12, 10, 4)), tmp_path / "two", "1.2.3.4.2")
    with pytest.raises(CohortError, match="2 DICOM series") as excinfo:
        read_image(tmp_path / "two", patient_id="P9", column="ap")
    assert_located(excinfo, "P9", "ap")
    # each series is named, so that the user can pick one: UID, description, number of slices
    assert "1.2.3.4.1 ('t1 vibe arterial', 6 slices)" in str(excinfo.value)
    assert "1.2.3.4.2 (no SeriesDescription, 4 slices)" in str(excinfo.value)
    X = pd.DataFrame(
        {"ap": [str(tmp_path / "two")], "mask": [mask_like(make_volume())]}, index=["P9"]
    )
    with pytest.raises(CohortError, match="2 DICOM series.*1.2.3.4.1.*1.2.3.4.2") as excinfo:
        validate_cohort(X, phases=("ap",))
    assert_located(excinfo, "P9", "ap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match="no DICOM series"):
        read_image(tmp_path / "empty", patient_id="P9", column="ap")


def test_dicom_series_with_a_missing_slice_is_refused(
    tmp_path, make_volume, mask_like, assert_located, write_dicom_series
):
    """Defect 4 of issue 13: 11 slices 10 mm apart, one lost: ITK alone reads 11.1-mm slices."""
    image = make_volume(size=(12, 10, 11), spacing=(0.8, 0.8, 10.0), origin=(0.0, 0.0, 0.0))
    write_dicom_series(image, tmp_path / "gap", "1.2.3.5")
    (tmp_path / "gap" / "1.2.3.5_004.dcm").unlink()  # the 5th slice (z = 40 mm)
    naive = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "gap")))
    assert naive.GetSpacing()[2] == pytest.approx(100 / 9)  # what SimpleITK alone makes of it
    with pytest.raises(CohortError, match="uneven DICOM slice positions") as excinfo:
        read_image(tmp_path / "gap", patient_id="0007", column="ap")
    assert_located(excinfo, "0007", "ap")
    message = str(excinfo.value)
    assert (
        "slices 4 and 5 (files '1.2.3.5_003.dcm' and '1.2.3.5_005.dcm') are 20 mm apart" in message
    )
    assert "where the others are 10 mm" in message
    assert "made-up slice spacing of 11.11 mm" in message and "5% of the spacing" in message
    # validate_cohort reads the headers only, with the same rule and the same message
    with pytest.raises(CohortError) as from_headers:
        validate_cohort(_series_table(tmp_path / "gap", mask=mask_like(image), pid="0007"), ("ap",))
    assert str(from_headers.value) == message
    with pytest.raises(CohortError, match="uneven DICOM slice positions"):
        load_case(_series_table(tmp_path / "gap", mask=mask_like(image)), "P4", ("ap",))


def test_real_dicom_series_with_a_gap(shared_data, tmp_path, assert_located):
    """pydicom's CT2 test series: its first slice lies 202.5 mm from the three others."""
    folder = shared_data / "dicom" / "pydicom_ct2_series"
    with pytest.raises(CohortError, match="uneven DICOM slice positions") as excinfo:
        read_image(folder, patient_id="CT2", column="pvp")
    assert_located(excinfo, "CT2", "pvp")
    assert "slices 1 and 2 (files '17106' and '17136') are 202.5 mm apart" in str(excinfo.value)
    assert "where the others are 1.25 mm" in str(excinfo.value)
    X = pd.DataFrame({"pvp": [str(folder)], "mask": [sitk.Image([16, 16, 4], sitk.sitkUInt8)]})
    with pytest.raises(CohortError, match="202.5 mm apart"):
        validate_cohort(X.set_axis(["CT2"]), phases=("pvp",))
    # its three contiguous slices are one volume: read, with their true 1.25-mm spacing
    for name in ("17136", "17166", "17196"):
        shutil.copy(folder / name, tmp_path / name)
    image = read_image(tmp_path)
    assert image.GetSize() == (16, 16, 3)
    np.testing.assert_allclose(image.GetSpacing(), (0.488281, 0.488281, 1.25), atol=1e-5)
    assert image.GetOrigin()[2] == pytest.approx(103.02, abs=1e-4)


def test_dicom_headers_give_the_geometry_itk_reads(tmp_path, make_volume, write_dicom_series):
    """validate_cohort's header-only geometry equals the one of the pixels read: oblique, slices
    named in reverse order, positions with two decimals (as some scanners write them)."""
    image = make_volume(size=(12, 10, 7), spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 30.0))
    image.SetDirection(sitk.VersorTransform((0.3, 0.5, 0.8), 0.4).GetMatrix())
    rounded = [
        tuple(round(c, 2) for c in image.TransformIndexToPhysicalPoint((0, 0, z))) for z in range(7)
    ]
    folder = tmp_path / "oblique"
    write_dicom_series(
        image, folder, "1.2.3.6", position=lambda z: rounded[z], name=lambda z: f"im{6 - z}.dcm"
    )
    read = read_image(folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(read.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), atol=5e-3)
    mask = sitk.Image(read.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(read)
    mask[3:6, 3:6, 2:4] = 1
    X = pd.DataFrame({"ap": [str(folder)], "mask": [mask]}, index=["P5"])
    validate_cohort(X, phases=("ap",), geometry_tolerance=1e-9)  # headers give ITK's geometry
    loaded, binary = load_case(X, "P5", phases=("ap",))["ap"]
    assert sitk.GetArrayViewFromImage(binary).sum() == 18


@pytest.mark.parametrize(
    "layout, match",
    [
        ("duplicate", "lie at the same position along the slice normal"),
        ("sheared", "not stacked along their normal"),
        ("drift", "the slice gaps range from 3 to 3.1 mm"),
    ],
)
def test_dicom_layouts_that_are_not_one_volume(
    tmp_path, layout, match, make_volume, mask_like, assert_located, write_dicom_series
):
    image = make_volume(size=(12, 10, 8), spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    folder = tmp_path / layout
    if layout == "duplicate":  # two volumes (e.g. time points) in one series
        write_dicom_series(image, folder, "1.2.3.7", name=lambda z: f"a{z}.dcm")
        write_dicom_series(image, folder, "1.2.3.7", name=lambda z: f"b{z}.dcm")
    elif layout == "sheared":  # a tilted CT gantry: each slice shifted 0.5 mm in y
        write_dicom_series(image, folder, "1.2.3.8", position=lambda z: (0.0, 0.5 * z, 3.0 * z))
    else:  # gaps of 3 mm, then 3.1: each within 5% of the median, yet the grid drifts 0.17 mm
        write_dicom_series(
            image, folder, "1.2.3.9", position=lambda z: (0.0, 0.0, 3.0 * z + 0.1 * max(0, z - 3))
        )
    with pytest.raises(CohortError, match=match) as excinfo:
        read_image(folder, patient_id="P6", column="dp")
    assert_located(excinfo, "P6", "dp")
    with pytest.raises(CohortError, match=match):
        validate_cohort(_series_table(folder, mask=mask_like(image), pid="P6"), ("ap",))


def test_dicom_positions_within_the_slice_tolerance_are_read(
    tmp_path, make_volume, write_dicom_series
):
    """Slices off an even grid by less than SLICE_SPACING_TOLERANCE of the spacing (rounding,
    float32 writers) are one volume; just above it they are refused."""
    from p53radiomics.io import SLICE_SPACING_TOLERANCE

    image = make_volume(size=(12, 10, 8), spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    jitter = np.array([0, 1, -1, 1, 0, -1, 1, 0]) * 3.0
    for fraction, accepted in ((0.8, True), (1.2, False)):
        off = fraction * SLICE_SPACING_TOLERANCE * jitter
        folder = tmp_path / f"jitter{fraction}"
        write_dicom_series(
            image, folder, "1.2.3.10", position=lambda z, off=off: (0.0, 0.0, 3.0 * z + off[z])
        )
        if accepted:
            assert read_image(folder).GetSpacing()[2] == pytest.approx(3.0)
        else:
            with pytest.raises(CohortError, match="uneven DICOM slice positions"):
                read_image(folder)
