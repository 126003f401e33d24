"""A DICOM SEG or RTSTRUCT must share its image's FrameOfReferenceUID (issue 16 follow-up).

The real SEG and CT files of ``shared/data/dicom`` share one frame of reference; copies with
another UID are written with pydicom into ``tmp_path`` (never into the shared folder).
"""

import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.exceptions import CohortError
from p53radiomics.io import load_case, read_image, read_mask

OTHER_UID = "1.2.826.0.1.3680043.8.498.7716.424242"


def _copy_with(source, target, **changes):
    """`source` read with pydicom, its top-level attributes `changes` set, written to `target`."""
    import pydicom

    ds = pydicom.dcmread(str(source), force=True)
    for name, value in changes.items():
        setattr(ds, name, value)
    ds.save_as(str(target))
    return str(target)


def _series_uid(folder):
    import pydicom

    return str(pydicom.dcmread(str(next(folder.iterdir())), force=True).FrameOfReferenceUID)


def test_a_dicom_series_carries_its_frame_of_reference(real_ct):
    folder, _ = real_ct
    image = read_image(str(folder))
    assert image.GetMetaData("0020|0052").strip() == _series_uid(folder)


def test_a_seg_on_another_frame_of_reference_is_refused(real_ct, tmp_path):
    folder, dicom = real_ct
    image = read_image(str(folder))
    same = read_mask(str(dicom / "seg_image_ct_binary.dcm"), reference=image)
    assert int(sitk.GetArrayFromImage(same).sum()) == 638  # the real pair agrees
    moved = _copy_with(
        dicom / "seg_image_ct_binary.dcm", tmp_path / "seg.dcm", FrameOfReferenceUID=OTHER_UID
    )
    with pytest.raises(
        CohortError, match=f"'P7', column 'ap_mask'.*frame of reference {OTHER_UID}"
    ):
        read_mask(moved, reference=image, patient_id="P7", column="ap_mask")
    # the same through a cohort table: named by patient and column
    X = pd.DataFrame({"ap": [str(folder)], "ap_mask": [moved]}, index=["P7"])
    with pytest.raises(CohortError, match=r"patient 'P7', column 'ap_mask'.*FrameOfReferenceUID"):
        load_case(X, "P7", phases=("ap",))
    # an image without a frame of reference (NIfTI, or made in memory): nothing to compare
    plain = sitk.Image(image.GetSize(), image.GetPixelID())
    plain.CopyInformation(image)
    assert int(sitk.GetArrayFromImage(read_mask(moved, reference=plain)).sum()) == 638


def _rtstruct_grid(uid=None):
    """The 10-mm grid of test_rtstruct's real rectangles, with FrameOfReferenceUID `uid`."""
    image = sitk.Image([50, 40, 3], sitk.sitkInt16)
    image.SetSpacing((10.0, 10.0, 10.0))
    image.SetOrigin((-245.0, -195.0, -200.0))
    if uid is not None:
        image.SetMetaData("0020|0052", uid)
    return image


def test_an_rtstruct_on_another_frame_of_reference_is_refused(shared_data, tmp_path):
    import pydicom

    path = shared_data / "dicom" / "pydicom_rtstruct.dcm"
    own = str(
        pydicom.dcmread(str(path), force=True)
        .ReferencedFrameOfReferenceSequence[0]
        .FrameOfReferenceUID
    )
    cell = str(path) + "#roi=patient"
    assert int(sitk.GetArrayFromImage(read_mask(cell, reference=_rtstruct_grid(own))).sum()) == 3600
    with pytest.raises(
        CohortError, match=f"'P3', column 'mask'.*ROI 'patient'.*{own}, its image on {OTHER_UID}"
    ):
        read_mask(cell, reference=_rtstruct_grid(OTHER_UID), patient_id="P3", column="mask")
    # a copy whose ROIs name the image's frame of reference is placed
    ds = pydicom.dcmread(str(path), force=True)
    for roi in ds.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = OTHER_UID
    ds.save_as(str(tmp_path / "rtstruct.dcm"))
    moved = str(tmp_path / "rtstruct.dcm") + "#roi=patient"
    assert (
        int(sitk.GetArrayFromImage(read_mask(moved, reference=_rtstruct_grid(OTHER_UID))).sum())
        == 3600
    )
    with pytest.raises(CohortError, match="frame of reference"):
        read_mask(moved, reference=_rtstruct_grid(own))
