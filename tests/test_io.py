"""Reading cells and validating cohort tables: real files through SimpleITK, every bad input of
DESIGN §7 that applies here, each error naming the patient id and the column."""

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.io import (
    check_binary_target,
    load_case,
    phase_columns,
    read_cohort_csv,
    read_image,
    read_mask,
    validate_cohort,
)

PHASES = ("ap", "pvp", "dp")


def _volume(seed=0, size=(12, 10, 6), spacing=(0.8, 0.8, 3.0), origin=(-5.0, 3.0, 10.0)):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 10, size=size[::-1]).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _mask_like(image, label=1):
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask[3:8, 3:7, 2:4] = label
    return mask


def _write_cohort(folder, n=3, ext=".nii.gz"):
    """Cohort files on disk and the CSV, with relative paths."""
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        pid = f"P{i + 1}"
        row = {"patient_id": pid, "ltd": 30.0 + i, "rim_aphe": i % 2, "p53": i % 2}
        for k, phase in enumerate(PHASES):
            image = _volume(seed=10 * i + k)
            sitk.WriteImage(image, str(folder / "img" / f"{pid}_{phase}{ext}"))
            sitk.WriteImage(_mask_like(image), str(folder / "img" / f"{pid}_{phase}_mask{ext}"))
            row[phase] = f"img/{pid}_{phase}{ext}"
            row[f"{phase}_mask"] = f"img/{pid}_{phase}_mask{ext}"
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


@pytest.fixture
def cohort(tmp_path):
    X, y = read_cohort_csv(_write_cohort(tmp_path), label="p53")
    return X, y, tmp_path


def _error(excinfo, patient_id, column):
    err = excinfo.value
    assert err.patient_id == patient_id and err.column == column, str(err)
    assert repr(patient_id) in str(err) and repr(column) in str(err)


# ---------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_read_image_formats_round_trip(tmp_path, ext):
    image = _volume()
    path = tmp_path / f"v{ext}"
    sitk.WriteImage(image, str(path))
    read = read_image(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-5)


def _write_dicom_series(image, folder, series_uid):
    """One DICOM file per slice with the tags a series reader needs (SimpleITK's own recipe)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for z in range(image.GetDepth()):
        slice_ = image[:, :, z]
        tags = {
            "0008|0060": "MR",
            "0020|000d": series_uid + ".1",
            "0020|000e": series_uid,
            "0020|0037": "\\".join(
                map(
                    str,
                    (
                        direction[0],
                        direction[3],
                        direction[6],
                        direction[1],
                        direction[4],
                        direction[7],
                    ),
                )
            ),
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z)))),
            "0020|0013": str(z + 1),
            "0018|0050": str(image.GetSpacing()[2]),
            "0008|0018": f"{series_uid}.{z + 1}",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid}_{z:03d}.dcm"))
        writer.Execute(slice_)


def test_read_image_dicom_series_folder(tmp_path):
    image = _volume(spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    _write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.1")
    read = read_image(tmp_path / "series")
    assert read.GetSize() == image.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), rtol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


def test_dicom_folder_with_two_series_or_none_is_an_error(tmp_path):
    _write_dicom_series(_volume(), tmp_path / "two", "1.2.3.4.1")
    _write_dicom_series(_volume(seed=1), tmp_path / "two", "1.2.3.4.2")
    with pytest.raises(CohortError, match="2 DICOM series") as excinfo:
        read_image(tmp_path / "two", patient_id="P9", column="ap")
    _error(excinfo, "P9", "ap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match="no DICOM series"):
        read_image(tmp_path / "empty", patient_id="P9", column="ap")


def test_in_memory_image_is_returned_untouched():
    image = _volume()
    before = sitk.GetArrayFromImage(image).copy()
    assert read_image(image) is image
    mask = _mask_like(image, label=5)
    binary = read_mask(mask)
    assert binary is not mask and sitk.GetArrayViewFromImage(mask).max() == 5
    assert set(np.unique(sitk.GetArrayFromImage(binary))) == {0, 1}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), before)


def test_not_a_volume(tmp_path):
    with pytest.raises(CohortError, match="3D volume"):
        read_image(sitk.Image([4, 4], sitk.sitkFloat32), patient_id="P1", column="ap")
    rgb = sitk.Image([4, 4, 3], sitk.sitkVectorUInt8, 3)
    with pytest.raises(CohortError, match="scalar"):
        read_image(rgb, patient_id="P1", column="ap")
    with pytest.raises(CohortError, match="SimpleITK.Image"):
        read_image(3.5, patient_id="P1", column="ap")


# ------------------------------------------------------------------------------------ cohort CSV
def test_read_cohort_csv_resolves_relative_paths_against_its_folder(cohort, monkeypatch, tmp_path):
    X, y, folder = cohort
    monkeypatch.chdir(tmp_path.parent)  # the working directory must not matter
    assert X.index.tolist() == ["P1", "P2", "P3"] and X.index.name == "patient_id"
    assert y.tolist() == [0, 1, 0] and "p53" not in X.columns
    assert X.loc["P2", "pvp_mask"] == str(folder.resolve() / "img" / "P2_pvp_mask.nii.gz")
    assert X["ltd"].tolist() == [30.0, 31.0, 32.0]
    validate_cohort(X, y=y, required_columns=["ltd", "rim_aphe"])


def test_read_cohort_csv_id_column_and_errors(tmp_path):
    (tmp_path / "a.csv").write_text("case,ap,mask\n7,/abs/a.nii,m.nii\n7,b.nii,m.nii\n")
    with pytest.raises(CohortError, match="unique") as excinfo:
        read_cohort_csv(tmp_path / "a.csv", id_column="case")
    assert excinfo.value.patient_id == "7"
    (tmp_path / "b.csv").write_text("case,ap,mask\n7,/abs/a.nii,m.nii\n8,b.nii,m.nii\n")
    X = read_cohort_csv(tmp_path / "b.csv")
    assert X.index.tolist() == ["7", "8"]  # first column, ids as strings
    assert X.loc["7", "ap"] == "/abs/a.nii"  # absolute paths kept
    assert X.loc["8", "mask"] == str(tmp_path.resolve() / "m.nii")
    with pytest.raises(CohortError, match="no label column 'p53'"):
        read_cohort_csv(tmp_path / "b.csv", label="p53")


# ---------------------------------------------------------------------------- bad inputs (§7)
def test_missing_file(cohort):
    X, _, folder = cohort
    (folder / "img" / "P2_pvp.nii.gz").unlink()
    with pytest.raises(CohortError, match="file not found") as excinfo:
        validate_cohort(X)
    _error(excinfo, "P2", "pvp")
    with pytest.raises(CohortError, match="file not found"):
        load_case(X, "P2")


def test_empty_cell(cohort):
    X, _, _ = cohort
    X.loc["P3", "dp"] = np.nan
    with pytest.raises(CohortError, match="empty") as excinfo:
        validate_cohort(X)
    _error(excinfo, "P3", "dp")


def test_unreadable_file(cohort):
    X, _, folder = cohort
    (folder / "img" / "P1_dp_mask.nii.gz").write_bytes(b"this is not an image")
    with pytest.raises(CohortError, match="cannot read image") as excinfo:
        validate_cohort(X)
    _error(excinfo, "P1", "dp_mask")


def test_empty_mask(cohort):
    X, _, folder = cohort
    path = folder / "img" / "P2_ap_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    sitk.WriteImage(mask * 0, str(path))
    with pytest.raises(CohortError, match="mask is empty") as excinfo:
        validate_cohort(X)
    _error(excinfo, "P2", "ap_mask")
    with pytest.raises(CohortError, match="mask is empty"):
        load_case(X, "P2")


def test_several_labels_in_a_mask(cohort):
    X, _, folder = cohort
    path = folder / "img" / "P3_pvp_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask[0, 0, 0] = 2
    sitk.WriteImage(mask, str(path))
    with pytest.raises(CohortError, match="2 labels") as excinfo:
        validate_cohort(X)
    _error(excinfo, "P3", "pvp_mask")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: sitk.Image([12, 10, 7], sitk.sitkUInt8), "size differs"),
        (lambda m: (m.SetSpacing((0.8, 0.8, 2.5)), m)[1], "spacing differs"),
        (lambda m: (m.SetOrigin((-5.0, 3.0, 13.0)), m)[1], "origin differs"),
        (lambda m: (m.SetDirection((1, 0, 0, 0, 0, 1, 0, 1, 0)), m)[1], "direction differs"),
    ],
)
def test_mask_and_image_of_different_geometry(cohort, change, message):
    X, _, folder = cohort
    path = folder / "img" / "P1_ap_mask.nii.gz"
    mask = change(sitk.ReadImage(str(path)))
    if not sitk.GetArrayViewFromImage(mask).any():
        mask[2, 2, 2] = 1
    sitk.WriteImage(mask, str(path))
    with pytest.raises(CohortError, match=message) as excinfo:
        validate_cohort(X)
    _error(excinfo, "P1", "ap_mask")
    with pytest.raises(CohortError, match=message):
        load_case(X, "P1")


def test_geometry_within_tolerance_passes(cohort):
    X, _, folder = cohort
    path = folder / "img" / "P1_ap_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask.SetOrigin(tuple(o + 1e-5 for o in mask.GetOrigin()))  # float rounding of another writer
    sitk.WriteImage(mask, str(path))
    validate_cohort(X)


def test_nan_in_required_clinical_column(cohort):
    X, _, _ = cohort
    X.loc["P2", "ltd"] = np.nan
    validate_cohort(X, check_images=False)  # not required: fine
    with pytest.raises(CohortError, match="missing value") as excinfo:
        validate_cohort(X, required_columns=["rim_aphe", "ltd"], check_images=False)
    _error(excinfo, "P2", "ltd")
    with pytest.raises(CohortError, match="'afp' is missing"):
        validate_cohort(X, required_columns=["afp"], check_images=False)


def test_single_class_in_y(cohort):
    X, y, _ = cohort
    with pytest.raises(CohortError, match="single class"):
        validate_cohort(X, y=pd.Series(1, index=X.index), check_images=False)
    with pytest.raises(CohortError, match="3 classes"):
        check_binary_target([0, 1, 2])
    y_missing = y.astype(float)
    y_missing.loc["P3"] = np.nan
    with pytest.raises(CohortError, match="label is missing") as excinfo:
        check_binary_target(y_missing, X.index)
    assert excinfo.value.patient_id == "P3"
    with pytest.raises(CohortError, match="2 labels for 3 patients"):
        check_binary_target(y.iloc[:2], X.index)
    np.testing.assert_array_equal(check_binary_target(y.iloc[::-1], X.index), y.to_numpy())


def test_unknown_phase_names(cohort):
    X, _, _ = cohort
    with pytest.raises(CohortError, match="unknown phase 'hbp'") as excinfo:
        validate_cohort(X, phases=("ap", "hbp"))
    assert excinfo.value.column == "hbp"
    with pytest.raises(CohortError, match="no mask"):
        phase_columns(X.drop(columns="dp_mask"), PHASES)
    with pytest.raises(ValueError, match="unique"):
        phase_columns(X, ("ap", "ap"))
    with pytest.raises(TypeError):
        phase_columns(X, "ap")


def test_duplicate_patient_ids(cohort):
    X, _, _ = cohort
    X.index = ["P1", "P2", "P1"]
    with pytest.raises(CohortError, match="unique") as excinfo:
        validate_cohort(X, check_images=False)
    assert excinfo.value.patient_id == "P1"


def test_shared_mask_column_and_in_memory_cells(cohort):
    X, _, folder = cohort
    images = [sitk.ReadImage(p) for p in X["ap"]]
    table = pd.DataFrame(
        {"ap": images, "pvp": list(X["pvp"]), "mask": list(X["ap_mask"])}, index=X.index
    )
    validate_cohort(table, phases=("ap", "pvp"))
    case = load_case(table, "P2", phases=("ap", "pvp"))
    assert case["ap"][0] is images[1]
    assert sitk.GetArrayViewFromImage(case["pvp"][1]).sum() == 5 * 4 * 2


def test_validation_writes_nothing(cohort):
    X, y, folder = cohort
    before = sorted(p.name for p in (folder / "img").iterdir())
    validate_cohort(X, y=y)
    for pid in X.index:
        load_case(X, pid)
    assert sorted(p.name for p in (folder / "img").iterdir()) == before


def test_cohort_error_pickles_with_its_location():
    import pickle

    err = pickle.loads(
        pickle.dumps(CohortError("mask is empty", patient_id="P1", column="ap_mask"))
    )
    assert (err.patient_id, err.column, str(err)) == (
        "P1",
        "ap_mask",
        "patient 'P1', column 'ap_mask': mask is empty",
    )


def test_real_abdominal_mr(shared_data, tmp_path):
    folder = shared_data / "abdominal_mr"
    image, mask = folder / "example_mr_sm.nii.gz", folder / "example_seg_roi_subset_mr.nii.gz"
    X = pd.DataFrame({"pvp": [str(image)], "mask": [str(mask)]}, index=["MR1"])
    labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(mask))))
    if labels.size > 2:  # a multi-organ segmentation: validation must say so
        with pytest.raises(CohortError, match="labels"):
            validate_cohort(X, phases=("pvp",))
        single = sitk.ReadImage(str(mask)) == int(labels[1])
        shutil.copy(image, tmp_path / "mr.nii.gz")
        sitk.WriteImage(single, str(tmp_path / "liver.nii.gz"))
        X = pd.DataFrame(
            {"pvp": [str(tmp_path / "mr.nii.gz")], "mask": [str(tmp_path / "liver.nii.gz")]},
            index=["MR1"],
        )
    validate_cohort(X, phases=("pvp",))
    loaded, binary = load_case(X, "MR1", phases=("pvp",))["pvp"]
    assert loaded.GetSize() == (117, 91, 20)
    assert sitk.GetArrayViewFromImage(binary).sum() > 1000
