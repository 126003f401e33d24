"""The cohort table: the CSV read as written (ids as text, paths against the CSV's folder), the
labels, and every bad input of DESIGN §7 that :func:`validate_cohort` refuses, each error naming
the patient id and the column."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.io import (
    binary_labels,
    check_binary_target,
    load_case,
    phase_columns,
    read_cohort_csv,
    validate_cohort,
)

PHASES = ("ap", "pvp", "dp")


@pytest.fixture
def cohort(tmp_path, write_cohort, make_volume, mask_like):
    """``(X, y, folder)``: three patients ``P1``-``P3``, the three phases, read from the CSV."""
    csv = write_cohort(
        tmp_path, ("P1", "P2", "P3"), PHASES, make_volume, mask_like, label=lambda i: i % 2
    )
    X, y = read_cohort_csv(csv, label="p53")
    return X, y, tmp_path


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


def test_read_cohort_csv_keeps_ids_as_written(tmp_path, assert_located):
    """Defect 5 of issue 13: without id_column, "0007" became the number 7."""
    (tmp_path / "0012").mkdir()  # a DICOM folder named like a number
    (tmp_path / "c.csv").write_text(
        "patient_id,ap,mask,age,ltd,p53\n"
        "0007,0012,m.nii,61,35.5,1\n"
        "0012,/abs/b.nii,m.nii,70,,0\n"
        "7,c.nii,m.nii,58,20.0,1\n"
    )
    for id_column in (None, "patient_id"):
        X, y = read_cohort_csv(tmp_path / "c.csv", id_column=id_column, label="p53")
        assert X.index.tolist() == ["0007", "0012", "7"] and X.index.name == "patient_id"
        assert X.loc["0007", "ap"] == str(tmp_path.resolve() / "0012")  # a path, as written
        assert X["age"].dtype.kind == "i" and X["ltd"].dtype.kind == "f"  # clinical stays numeric
        assert y.tolist() == [1, 0, 1] and y.name == "p53"
    # first column, no known id name: still text
    (tmp_path / "d.csv").write_text("case,ap,mask\n001,a.nii,m.nii\n010,b.nii,m.nii\n")
    assert read_cohort_csv(tmp_path / "d.csv").index.tolist() == ["001", "010"]
    # ...and so named as written in errors
    X = read_cohort_csv(tmp_path / "d.csv", phases=("ap",))
    with pytest.raises(CohortError, match="file not found") as excinfo:
        validate_cohort(X, phases=("ap",))
    assert_located(excinfo, "001", "ap")
    for bad in ("", "NA", "  "):
        (tmp_path / "e.csv").write_text(f"case,ap,mask\n001,a.nii,m.nii\n{bad},b.nii,m.nii\n")
        with pytest.raises(CohortError, match="row 3 of .* has no patient id"):
            read_cohort_csv(tmp_path / "e.csv")


# ----------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "y, expected",
    [
        ([0, 1, 1], [0, 1, 1]),
        ([0.0, 1.0, 0.0], [0, 1, 0]),
        ([True, False, True], [1, 0, 1]),
        (np.array([1, 0, 0], dtype=np.uint8), [1, 0, 0]),
    ],
)
def test_binary_labels_take_0_1_and_booleans_as_they_are(y, expected):
    labels = binary_labels(y)
    assert labels.dtype == np.int64 and labels.tolist() == expected


def test_binary_labels_need_a_positive_class_for_other_labels():
    """Defect 6 of issue 13: string labels inverted the probability without a word."""
    index = pd.Index(["0007", "0012", "0019"], name="patient_id")
    y = pd.Series(["wild-type", "mutant", "mutant"], index=index[::-1], name="p53")
    with pytest.raises(CohortError, match="labels 'mutant', 'wild-type' are not 0/1") as excinfo:
        binary_labels(y, index)
    assert excinfo.value.column == "p53" and excinfo.value.patient_id is None
    assert binary_labels(y, index, pos_label="mutant").tolist() == [1, 1, 0]  # in index order
    assert binary_labels(y, index, pos_label="wild-type").tolist() == [0, 0, 1]
    with pytest.raises(CohortError, match=r"pos_label='P53\+' is not one of the labels found "):
        binary_labels(y, index, pos_label="P53+")
    with pytest.raises(CohortError, match=r"labels 1, 2 are not 0/1") as excinfo:
        binary_labels([1, 2, 2], column="grade")
    assert excinfo.value.column == "grade"
    assert binary_labels([1, 2, 2], pos_label=2).tolist() == [0, 1, 1]
    assert binary_labels([0, 1, 1], pos_label=0).tolist() == [1, 0, 0]  # explicit: allowed
    with pytest.raises(CohortError, match=r"pos_label='1' is not one of the labels found \(0, 1\)"):
        binary_labels([0, 1], pos_label="1")
    # the checks of check_binary_target, naming the column
    with pytest.raises(CohortError, match="label is missing") as excinfo:
        binary_labels(pd.Series(["mutant", None, "wild-type"], index=index, name="p53"), index)
    assert (excinfo.value.patient_id, excinfo.value.column) == ("0012", "p53")
    with pytest.raises(CohortError, match="single class") as excinfo:
        binary_labels(pd.Series(["mutant"] * 3, name="p53"), pos_label="mutant")
    assert excinfo.value.column == "p53"


def test_binary_labels_make_predict_proba_the_positive_class():
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [0.2], [0.9], [1.0]])
    y = np.array(["wild-type", "wild-type", "mutant", "mutant"])
    naive = LogisticRegression().fit(X, y).predict_proba([[1.0]])[0, 1]
    assert naive < 0.5  # scikit-learn's sorted classes: column 1 is "wild-type"
    right = LogisticRegression().fit(X, binary_labels(y, pos_label="mutant"))
    assert right.predict_proba([[1.0]])[0, 1] > 0.5


def test_validate_cohort_refuses_labels_without_a_positive_class(cohort):
    X, _, _ = cohort
    y = pd.Series(["pos", "neg", "pos"], index=X.index, name="p53")
    with pytest.raises(CohortError, match="labels 'neg', 'pos' are not 0/1 or booleans") as excinfo:
        validate_cohort(X, y=y, check_images=False)
    assert excinfo.value.column == "p53"
    validate_cohort(X, y=y, pos_label="pos", check_images=False)
    with pytest.raises(CohortError, match="pos_label='mutant' is not one of the labels"):
        validate_cohort(X, y=y, pos_label="mutant", check_images=False)


# ---------------------------------------------------------------------------- bad inputs (§7)
def test_missing_file(cohort, assert_located):
    X, _, folder = cohort
    (folder / "img" / "P2_pvp.nii.gz").unlink()
    with pytest.raises(CohortError, match="file not found") as excinfo:
        validate_cohort(X)
    assert_located(excinfo, "P2", "pvp")
    with pytest.raises(CohortError, match="file not found"):
        load_case(X, "P2")


def test_empty_cell(cohort, assert_located):
    X, _, _ = cohort
    X.loc["P3", "dp"] = np.nan
    with pytest.raises(CohortError, match="empty") as excinfo:
        validate_cohort(X)
    assert_located(excinfo, "P3", "dp")


def test_unreadable_file(cohort, assert_located):
    X, _, folder = cohort
    (folder / "img" / "P1_dp_mask.nii.gz").write_bytes(b"this is not an image")
    with pytest.raises(CohortError, match="cannot read image") as excinfo:
        validate_cohort(X)
    assert_located(excinfo, "P1", "dp_mask")


def test_empty_mask(cohort, assert_located):
    X, _, folder = cohort
    path = folder / "img" / "P2_ap_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    sitk.WriteImage(mask * 0, str(path))
    with pytest.raises(CohortError, match="mask is empty") as excinfo:
        validate_cohort(X)
    assert_located(excinfo, "P2", "ap_mask")
    with pytest.raises(CohortError, match="mask is empty"):
        load_case(X, "P2")


def test_several_labels_in_a_mask(cohort, assert_located):
    X, _, folder = cohort
    path = folder / "img" / "P3_pvp_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask[0, 0, 0] = 2
    sitk.WriteImage(mask, str(path))
    with pytest.raises(CohortError, match="2 labels") as excinfo:
        validate_cohort(X)
    assert_located(excinfo, "P3", "pvp_mask")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: sitk.Image([12, 10, 7], sitk.sitkUInt8), "size differs"),
        (lambda m: (m.SetSpacing((0.8, 0.8, 2.5)), m)[1], "spacing differs"),
        (lambda m: (m.SetOrigin((-5.0, 3.0, 13.0)), m)[1], "origin differs"),
        (lambda m: (m.SetDirection((1, 0, 0, 0, 0, 1, 0, 1, 0)), m)[1], "direction differs"),
    ],
)
def test_mask_and_image_of_different_geometry(cohort, change, message, assert_located):
    X, _, folder = cohort
    path = folder / "img" / "P1_ap_mask.nii.gz"
    mask = change(sitk.ReadImage(str(path)))
    if not sitk.GetArrayViewFromImage(mask).any():
        mask[2, 2, 2] = 1
    sitk.WriteImage(mask, str(path))
    with pytest.raises(CohortError, match=message) as excinfo:
        validate_cohort(X)
    assert_located(excinfo, "P1", "ap_mask")
    with pytest.raises(CohortError, match=message):
        load_case(X, "P1")


def test_geometry_within_tolerance_passes(cohort):
    X, _, folder = cohort
    path = folder / "img" / "P1_ap_mask.nii.gz"
    mask = sitk.ReadImage(str(path))
    mask.SetOrigin(tuple(o + 1e-5 for o in mask.GetOrigin()))  # float rounding of another writer
    sitk.WriteImage(mask, str(path))
    written = sitk.ReadImage(str(path)).GetOrigin()
    validate_cohort(X)
    # load_case hands every step the mask on its image's grid, so that none applies a tolerance
    # of its own (defect 8 of issue 13: PyRadiomics refused what validate_cohort had accepted)
    image, binary = load_case(X, "P1", phases=("ap",))["ap"]
    assert binary.GetOrigin() == image.GetOrigin() and binary.GetSpacing() == image.GetSpacing()
    assert sitk.ReadImage(str(path)).GetOrigin() == written != image.GetOrigin()  # file untouched


def test_nan_in_required_clinical_column(cohort, assert_located):
    X, _, _ = cohort
    X.loc["P2", "ltd"] = np.nan
    validate_cohort(X, check_images=False)  # not required: fine
    with pytest.raises(CohortError, match="missing value") as excinfo:
        validate_cohort(X, required_columns=["rim_aphe", "ltd"], check_images=False)
    assert_located(excinfo, "P2", "ltd")
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
