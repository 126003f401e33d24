"""Series selection (issue 16, item 3): a folder of several DICOM series and a selector per cell,
the one parser of selectors, and paths that hold '#' literally."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.exceptions import CohortError
from p53radiomics.io import load_case, parse_cell, read_image, validate_cohort


@pytest.fixture
def exam(tmp_path, make_volume, write_dicom_series):
    """A folder of two series (arterial 'vibe ap', SeriesNumber 4; portal 'vibe pvp', number 7)."""
    folder = tmp_path / "exam"
    ap, pvp = make_volume(seed=1), make_volume(seed=2)
    write_dicom_series(ap, folder, "1.2.3.4", description="VIBE ap")
    write_dicom_series(pvp, folder, "1.2.3.7", description="vibe pvp")
    for uid, number in (("1.2.3.4", "4"), ("1.2.3.7", "7")):  # SeriesNumber, with pydicom
        import pydicom

        for f in folder.glob(f"{uid}_*.dcm"):
            ds = pydicom.dcmread(f)
            ds.SeriesNumber = number
            ds.save_as(f)
    return folder, ap, pvp


def _same(a, b):
    return np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_each_selector_picks_its_series(exam):
    folder, ap, pvp = exam
    assert _same(read_image(f"{folder}#series=1.2.3.4"), ap)
    assert _same(read_image(f"{folder}#number=7"), pvp)
    assert _same(read_image(f"{folder}#description=*AP"), ap)  # case-insensitive pattern
    assert _same(read_image(f"{folder}#description=vibe pvp"), pvp)


def test_ambiguous_folder_lists_series_and_the_syntax(exam, assert_located):
    folder = exam[0]
    with pytest.raises(CohortError) as e:
        read_image(str(folder), patient_id="P1", column="ap")
    assert_located(e, "P1", "ap")
    message = str(e.value)
    assert (
        "2 DICOM series: 1.2.3.4 ('VIBE ap', 6 slices); 1.2.3.7 ('vibe pvp', 6 slices)" in message
    )
    assert "'#series=...'" in message and "'#number=...'" in message
    assert "'#description=...'" in message and "SeriesNumbers, in that order: 4, 7" in message


def test_selector_matching_none_or_several(exam, assert_located):
    folder = exam[0]
    with pytest.raises(CohortError, match=r"'#number=5' matches none of the 2 DICOM series") as e:
        read_image(f"{folder}#number=5", patient_id="P1", column="pvp")
    assert_located(e, "P1", "pvp")
    with pytest.raises(CohortError, match=r"'#description=vibe\*' matches 2 of the 2"):
        read_image(f"{folder}#description=vibe*")
    with pytest.raises(CohortError, match="must be a SeriesNumber"):
        read_image(f"{folder}#number=four")
    with pytest.raises(CohortError, match="'#segment=' does not apply to .*a DICOM folder"):
        read_image(f"{folder}#segment=1")


def test_per_phase_selectors_through_a_cohort(exam, mask_like):
    folder, ap, pvp = exam
    X = pd.DataFrame(
        {
            "ap": [f"{folder}#number=4"],
            "pvp": [f"{folder}#series=1.2.3.7"],
            "mask": [mask_like(ap)],
        },
        index=["P1"],
    )
    validate_cohort(X, phases=("ap", "pvp"))
    case = load_case(X, "P1", phases=("ap", "pvp"))
    assert _same(case["ap"][0], ap) and _same(case["pvp"][0], pvp)


def test_a_seg_beside_the_series_does_not_make_it_ambiguous(
    synthetic_dicom_case, write_seg, tmp_path
):
    folder, image, label = synthetic_dicom_case
    seg = write_seg(folder, [sitk.GetArrayFromImage(label) == 1], tmp_path / "seg.dcm")
    shutil.copy(seg, folder / "seg.dcm")  # exported into the series' folder
    assert _same(read_image(str(folder)), image)


def test_parser_and_literal_hashes(tmp_path, make_volume):
    assert parse_cell("a/b#description=T1 #2") == ("a/b", "description", "T1 #2")
    assert parse_cell("a#b/c.nii") == ("a#b/c.nii", None, None)
    assert parse_cell(Path("x.nii#roi=GTV")) == (Path("x.nii#roi=GTV"), None, None)
    assert parse_cell("x.nii#unknown=1") == ("x.nii#unknown=1", None, None)
    with pytest.raises(ValueError, match="has no value"):
        parse_cell("x.dcm#roi=")
    # a path holding '#' (not followed by a selector key) is read as it is
    folder = tmp_path / "case#3"
    folder.mkdir()
    image = make_volume()
    sitk.WriteImage(image, str(folder / "ap#1.nii.gz"))
    assert _same(read_image(str(folder / "ap#1.nii.gz")), image)
    # one that looks like a selector is given as a pathlib.Path
    odd = tmp_path / "ap.nii.gz#number=4"
    odd.mkdir()
    sitk.WriteImage(image, str(odd / "ap.nii.gz"))
    assert _same(read_image(odd / "ap.nii.gz"), image)
    with pytest.raises(CohortError, match="does not apply to .*an image file"):
        read_image(str(folder / "ap#1.nii.gz") + "#number=4")
