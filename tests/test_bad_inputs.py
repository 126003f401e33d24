"""The bad-input matrix (DESIGN §7, issue 13): every kind of bad cohort a hospital export holds is
refused by :func:`p53radiomics.io.validate_cohort` with a :class:`CohortError` naming the patient and
the column, and the inputs that are fine, however they are stored, stay accepted.

One small cohort on disk (two phases, three patients whose ids have leading zeros, read from its
CSV as a user would, without ``id_column``), broken one way per row. Real files, written with
SimpleITK in ``tmp_path``; tiny volumes, so that the whole matrix takes seconds. To add a row: a
function that breaks the cohort and returns the arguments of ``validate_cohort``, with the
patient, the column and the message expected.
"""

import stat

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError, LargestSliceCropper, N4Resampler
from p53radiomics.io import GEOMETRY_TOLERANCE, load_case, read_cohort_csv, validate_cohort
from tests._shared_data import shared_data_dir

PHASES = ("ap", "pvp")
IDS = ("0007", "0012", "0019")  # text: read without id_column they must not become 7, 12, 19
SPACING = (0.9, 0.9, 3.0)


def _image(seed, size=(10, 8, 5), origin=(-4.0, 2.0, 8.0)):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 10, size=size[::-1]).astype(np.int16))
    image.SetSpacing(SPACING)
    image.SetOrigin(origin)
    return image


def _mask(image, value=1, pixel=sitk.sitkUInt8):
    mask = sitk.Image(image.GetSize(), pixel)
    mask.CopyInformation(image)
    mask[3:7, 2:6, 1:4] = value
    return mask


def _write_dicom(image, folder, uid, *, description=None, skip=()):
    """One DICOM file per slice (SimpleITK's recipe), leaving out the slices in `skip`."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    for z in range(image.GetDepth()):
        if z in skip:
            continue
        slice_ = image[:, :, z]
        tags = {
            "0008|0060": "MR",
            "0020|000d": uid + ".1",
            "0020|000e": uid,
            "0020|0037": "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7]))),
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z)))),
            "0020|0013": str(z + 1),
            "0008|0018": f"{uid}.{z + 1}",
        }
        if description:
            tags["0008|103e"] = description
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid}_{z:03d}.dcm"))
        writer.Execute(slice_)
    return folder


@pytest.fixture
def cohort(tmp_path, write_cohort):
    """``(X, y, folder)``: the cohort CSV read back as a user would."""
    csv = write_cohort(tmp_path, IDS, PHASES, _image, _mask, label=lambda i: (i + 1) % 2)
    X, y = read_cohort_csv(csv, phases=PHASES, label="p53")
    return X, y, tmp_path


def _args(X, y=None, **kwargs):
    return {"X": X, "phases": PHASES, "y": y, **kwargs}


# ------------------------------------------------------------------------------- the bad cohorts
def _missing_file(X, y, folder):
    (folder / "img" / "0012_pvp.nii.gz").unlink()
    return _args(X)


def _unreadable_file(X, y, folder):
    (folder / "img" / "0007_ap_mask.nii.gz").write_bytes(b"not an image")
    return _args(X)


def _empty_mask(X, y, folder):
    image = sitk.ReadImage(str(folder / "img" / "0019_ap.nii.gz"))
    sitk.WriteImage(_mask(image, value=0), str(folder / "img" / "0019_ap_mask.nii.gz"))
    return _args(X)


def _geometry_mismatch(X, y, folder):
    path = folder / "img" / "0012_ap_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask.SetOrigin(tuple(o + 2 * GEOMETRY_TOLERANCE * min(SPACING) for o in mask.GetOrigin()))
    sitk.WriteImage(mask, str(path))
    return _args(X)


def _several_labels(X, y, folder):
    path = folder / "img" / "0007_pvp_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask[0, 0, 0] = 2
    sitk.WriteImage(mask, str(path))
    return _args(X)


def _nan_clinical_value(X, y, folder):
    X.loc["0019", "ltd"] = np.nan
    return _args(X, required_columns=["rim_aphe", "ltd"])


def _single_class(X, y, folder):
    return _args(X, pd.Series(1, index=X.index, name="p53"))


def _unknown_phase(X, y, folder):
    return {"X": X, "phases": ("ap", "hbp")}


def _uneven_dicom_slices(X, y, folder):  # a series exported with a slice missing
    image = _image(3, size=(10, 8, 7))
    X.loc["0012", "ap"] = str(
        _write_dicom(image, folder / "dicom" / "0012_ap", "1.2.3.1", skip={3})
    )
    return _args(X)


def _real_dicom_with_a_gap(X, y, folder):  # pydicom's own CT2 series: slice 1 lies 202 mm away
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("reference data not found: set P53RADIOMICS_SHARED_DATA")
    X.loc["0019", "pvp"] = str(shared / "dicom" / "pydicom_ct2_series")
    return _args(X)


def _multi_series_folder(X, y, folder):
    target = folder / "dicom" / "0007_pvp"
    _write_dicom(_image(4), target, "1.2.3.2", description="vibe pvp")
    _write_dicom(_image(5), target, "1.2.3.3", description="vibe pvp moco")
    X.loc["0007", "pvp"] = str(target)
    return _args(X)


def _string_labels(X, y, folder):
    return _args(X, y.map({1: "mutant", 0: "wild-type"}))


def _leading_zero_id(X, y, folder):
    (folder / "img" / "0007_ap.nii.gz").unlink()
    return _args(X)


def _replace_image(folder, name, edit, suffix=".nii.gz"):
    """Rewrite one image as float32 with `edit` applied to its (z, y, x) array; point X at it."""
    image = sitk.ReadImage(str(folder / "img" / f"{name}.nii.gz"))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    edit(array)
    edited = sitk.GetImageFromArray(array)
    edited.CopyInformation(image)
    path = folder / "img" / f"{name}_edited{suffix}"
    sitk.WriteImage(edited, str(path))
    return str(path)


def _nan_in_nifti(X, y, folder):  # ITK 5 reads the NaN as 0: nibabel sees it as stored
    X.loc["0012", "pvp"] = _replace_image(
        folder, "0012_pvp", lambda a: a.__setitem__((2, 3, 4), np.nan)
    )
    return _args(X, check_voxels=True)


def _infinite_voxel(X, y, folder):  # NRRD keeps it: refused on the image's own values
    X.loc["0019", "ap"] = _replace_image(
        folder, "0019_ap", lambda a: a.__setitem__((1, 1, 1), -np.inf), ".nrrd"
    )
    return _args(X, check_voxels=True)


def _constant_image(X, y, folder):
    X.loc["0007", "pvp"] = _replace_image(folder, "0007_pvp", lambda a: a.fill(120.0))
    return _args(X, check_voxels=True)


BAD_COHORTS = {  # name: (break, patient, column, message)
    "missing file": (_missing_file, "0012", "pvp", "file not found"),
    "unreadable file": (_unreadable_file, "0007", "ap_mask", "cannot read image"),
    "empty mask": (_empty_mask, "0019", "ap_mask", "mask is empty"),
    "geometry mismatch": (_geometry_mismatch, "0012", "ap_mask", "origin differs: .*tolerated"),
    "several labels in a mask": (_several_labels, "0007", "pvp_mask", "mask holds 2 labels"),
    "NaN clinical value": (_nan_clinical_value, "0019", "ltd", "missing value"),
    "single class": (_single_class, None, "p53", "single class"),
    "unknown phase": (_unknown_phase, None, "hbp", "unknown phase 'hbp'"),
    "uneven DICOM slices": (
        _uneven_dicom_slices,
        "0012",
        "ap",
        "uneven DICOM slice positions.*slices 3 and 4 .* are 6 mm apart where the others are 3 mm",
    ),
    "real DICOM series with a gap": (
        _real_dicom_with_a_gap,
        "0019",
        "pvp",
        "slices 1 and 2 .* are 202.5 mm apart where the others are 1.25 mm",
    ),
    "multi-series folder": (
        _multi_series_folder,
        "0007",
        "pvp",
        r"2 DICOM series: 1\.2\.3\.[23] \('vibe pvp( moco)?', 5 slices\); 1\.2\.3\.[23] \('vibe",
    ),
    "string labels without a positive class": (
        _string_labels,
        None,
        "p53",
        "labels 'mutant', 'wild-type' are not 0/1 or booleans: say which one is P53-mutated",
    ),
    "leading-zero ids kept": (_leading_zero_id, "0007", "ap", "file not found"),
    "NaN voxel in a NIfTI file": (
        _nan_in_nifti,
        "0012",
        "pvp",
        r"stores 1 NaN and 0 infinite voxels .* which ITK reads as 0",
    ),
    "infinite voxel": (_infinite_voxel, "0019", "ap", "holds 0 NaN and 1 infinite voxels"),
    "constant image": (_constant_image, "0007", "pvp", "the image is constant"),
}
#: Refused by the steps that read whole images (N4Resampler, LargestSliceCropper) and by
#: validate_cohort(check_voxels=True), not by load_case, which also serves images in memory.
VOXEL_CHECKS = {"infinite voxel", "constant image"}


@pytest.mark.parametrize("case", BAD_COHORTS)
def test_bad_cohort_is_refused_naming_patient_and_column(case, cohort):
    breaks, patient, column, message = BAD_COHORTS[case]
    args = breaks(*cohort)
    with pytest.raises(CohortError, match=message) as excinfo:
        validate_cohort(**args)
    error = excinfo.value
    assert (error.patient_id, error.column) == (patient, column), str(error)
    where = f"patient {patient!r}, column {column!r}" if patient else f"column {column!r}"
    assert str(error).startswith(where + ": ")
    if case in VOXEL_CHECKS:
        with pytest.raises(CohortError, match=message):
            N4Resampler(args["phases"], margin_mm=None).fit_transform(args["X"])
        with pytest.raises(CohortError, match=message):
            LargestSliceCropper(args["phases"], size=8).fit_transform(args["X"])
    elif column in PHASES or column.endswith("_mask"):
        # every step reads its cases as validate_cohort does: the same error, word for word
        with pytest.raises(CohortError) as from_a_step:
            load_case(args["X"], patient, args["phases"])
        assert str(from_a_step.value) == str(error)


# ------------------------------------------------------------------------- the ones that are fine
def _dicom_folder(X, folder):
    image = _image(6, size=(10, 8, 6))
    series = _write_dicom(image, folder / "dicom" / "0012_ap", "1.2.3.4", description="vibe ap")
    read = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series)))
    sitk.WriteImage(_mask(read), str(folder / "img" / "0012_ap_dicom_mask.nii.gz"))
    X.loc["0012", "ap"] = str(series)
    X.loc["0012", "ap_mask"] = str(folder / "img" / "0012_ap_dicom_mask.nii.gz")
    return 4 * 4 * 3


def _mask_0_255(X, folder):
    path = folder / "img" / "0007_pvp_mask.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(path)) * 255, str(path))
    return 4 * 4 * 3


def _float_mask(X, folder):
    path = folder / "img" / "0019_ap_mask.nii.gz"
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32) * 0.5, str(path))
    return 4 * 4 * 3


def _rounding_of_another_writer(X, folder):
    path = folder / "img" / "0012_pvp_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask.SetOrigin(tuple(o + 1e-5 for o in mask.GetOrigin()))
    sitk.WriteImage(mask, str(path))
    return 4 * 4 * 3


def _in_memory(X, folder):
    for column in ("ap", "ap_mask"):
        X[column] = pd.Series([sitk.ReadImage(p) for p in X[column]], index=X.index, dtype=object)
    return 4 * 4 * 3


GOOD_COHORTS = {
    "DICOM folder": ("0012", "ap", _dicom_folder),
    "0/255 mask": ("0007", "pvp", _mask_0_255),
    "float mask": ("0019", "ap", _float_mask),
    "mask 1e-5 mm off (float rounding)": ("0012", "pvp", _rounding_of_another_writer),
    "images in memory": ("0007", "ap", _in_memory),
}


@pytest.mark.parametrize("case", GOOD_COHORTS)
def test_good_cohort_is_accepted(case, cohort):
    X, y, folder = cohort
    patient, phase, change = GOOD_COHORTS[case]
    voxels = change(X, folder)
    validate_cohort(X, PHASES, y=y, required_columns=["ltd", "rim_aphe"])
    image, mask = load_case(X, patient, PHASES)[phase]
    assert int(sitk.GetArrayViewFromImage(mask).sum()) == voxels
    assert mask.GetOrigin() == image.GetOrigin() and mask.GetDirection() == image.GetDirection()


def test_read_only_input_is_accepted_and_left_untouched(cohort):
    X, y, folder = cohort
    _dicom_folder(X, folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    try:
        for path in files:
            path.chmod(stat.S_IRUSR | stat.S_IRGRP)
        for path in folders:
            path.chmod(stat.S_IRUSR | stat.S_IXUSR)
        validate_cohort(X, PHASES, y=y)
        for pid in X.index:
            load_case(X, pid, PHASES)
        assert sorted(p for p in folder.rglob("*") if p.is_file()) == files
    finally:
        for path in folders:
            path.chmod(stat.S_IRWXU)
        for path in files:
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_ids_and_positive_class_are_kept_through_the_checks(cohort):
    X, y, folder = cohort
    assert X.index.tolist() == list(IDS) and all(isinstance(i, str) for i in X.index)
    labels = y.map({1: "mutant", 0: "wild-type"})
    validate_cohort(X, PHASES, y=labels, pos_label="mutant")
