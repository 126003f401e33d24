"""Reading cells and validating cohort tables: real files through SimpleITK, every bad input of
DESIGN §7 that applies here, each error naming the patient id and the column."""

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.io import (
    GEOMETRY_TOLERANCE,
    binary_labels,
    check_binary_target,
    check_geometry,
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


def _write_dicom_series(image, folder, series_uid, *, description=None, position=None, name=None):
    """One DICOM file per slice with the tags a series reader needs (SimpleITK's own recipe).

    `position(z)` overrides the ImagePositionPatient of slice `z`, `name(z)` its file name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for z in range(image.GetDepth()):
        slice_ = image[:, :, z]
        ipp = position(z) if position else image.TransformIndexToPhysicalPoint((0, 0, z))
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
            "0020|0032": "\\".join(map(str, ipp)),
            "0020|0013": str(z + 1),
            "0018|0050": str(image.GetSpacing()[2]),
            "0008|0018": f"{series_uid}.{z + 1}",
        }
        if description is not None:
            tags["0008|103e"] = description
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / (name(z) if name else f"{series_uid}_{z:03d}.dcm")))
        writer.Execute(slice_)


def test_read_image_dicom_series_folder(tmp_path):
    image = _volume(spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    _write_dicom_series(image, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.1")
    read = read_image(tmp_path / "series")
    assert read.GetSize() == image.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), rtol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


def test_dicom_folder_with_two_series_or_none_is_an_error(tmp_path):
    _write_dicom_series(_volume(), tmp_path / "two", "1.2.3.4.1", description="t1 vibe arterial")
    _write_dicom_series(_volume(seed=1, size=(12, 10, 4)), tmp_path / "two", "1.2.3.4.2")
    with pytest.raises(CohortError, match="2 DICOM series") as excinfo:
        read_image(tmp_path / "two", patient_id="P9", column="ap")
    _error(excinfo, "P9", "ap")
    # each series is named, so that the user can pick one: UID, description, number of slices
    assert "1.2.3.4.1 ('t1 vibe arterial', 6 slices)" in str(excinfo.value)
    assert "1.2.3.4.2 (no SeriesDescription, 4 slices)" in str(excinfo.value)
    X = pd.DataFrame({"ap": [str(tmp_path / "two")], "mask": [_mask_like(_volume())]}, index=["P9"])
    with pytest.raises(CohortError, match="2 DICOM series.*1.2.3.4.1.*1.2.3.4.2") as excinfo:
        validate_cohort(X, phases=("ap",))
    _error(excinfo, "P9", "ap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match="no DICOM series"):
        read_image(tmp_path / "empty", patient_id="P9", column="ap")


def _series_table(folder, mask, pid="P4"):
    """A one-patient table whose ``ap`` image is the DICOM folder."""
    return pd.DataFrame({"ap": [str(folder)], "mask": [mask]}, index=[pid])


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    """Defect 4 of issue 13: 11 slices 10 mm apart, one lost: ITK alone reads 11.1-mm slices."""
    image = _volume(size=(12, 10, 11), spacing=(0.8, 0.8, 10.0), origin=(0.0, 0.0, 0.0))
    _write_dicom_series(image, tmp_path / "gap", "1.2.3.5")
    (tmp_path / "gap" / "1.2.3.5_004.dcm").unlink()  # the 5th slice (z = 40 mm)
    naive = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "gap")))
    assert naive.GetSpacing()[2] == pytest.approx(100 / 9)  # what SimpleITK alone makes of it
    with pytest.raises(CohortError, match="uneven DICOM slice positions") as excinfo:
        read_image(tmp_path / "gap", patient_id="0007", column="ap")
    _error(excinfo, "0007", "ap")
    message = str(excinfo.value)
    assert (
        "slices 4 and 5 (files '1.2.3.5_003.dcm' and '1.2.3.5_005.dcm') are 20 mm apart" in message
    )
    assert "where the others are 10 mm" in message
    assert "made-up slice spacing of 11.11 mm" in message and "5% of the spacing" in message
    # validate_cohort reads the headers only, with the same rule and the same message
    with pytest.raises(CohortError) as from_headers:
        validate_cohort(
            _series_table(tmp_path / "gap", mask=_mask_like(image), pid="0007"), ("ap",)
        )
    assert str(from_headers.value) == message
    with pytest.raises(CohortError, match="uneven DICOM slice positions"):
        load_case(_series_table(tmp_path / "gap", mask=_mask_like(image)), "P4", ("ap",))


def test_real_dicom_series_with_a_gap(shared_data, tmp_path):
    """pydicom's CT2 test series: its first slice lies 202.5 mm from the three others."""
    folder = shared_data / "dicom" / "pydicom_ct2_series"
    with pytest.raises(CohortError, match="uneven DICOM slice positions") as excinfo:
        read_image(folder, patient_id="CT2", column="pvp")
    _error(excinfo, "CT2", "pvp")
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


def test_dicom_headers_give_the_geometry_itk_reads(tmp_path):
    """validate_cohort's header-only geometry equals the one of the pixels read: oblique, slices
    named in reverse order, positions with two decimals (as some scanners write them)."""
    image = _volume(size=(12, 10, 7), spacing=(0.7, 0.8, 2.5), origin=(10.0, -20.0, 30.0))
    image.SetDirection(sitk.VersorTransform((0.3, 0.5, 0.8), 0.4).GetMatrix())
    rounded = [
        tuple(round(c, 2) for c in image.TransformIndexToPhysicalPoint((0, 0, z))) for z in range(7)
    ]
    folder = tmp_path / "oblique"
    _write_dicom_series(
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
def test_dicom_layouts_that_are_not_one_volume(tmp_path, layout, match):
    image = _volume(size=(12, 10, 8), spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    folder = tmp_path / layout
    if layout == "duplicate":  # two volumes (e.g. time points) in one series
        _write_dicom_series(image, folder, "1.2.3.7", name=lambda z: f"a{z}.dcm")
        _write_dicom_series(image, folder, "1.2.3.7", name=lambda z: f"b{z}.dcm")
    elif layout == "sheared":  # a tilted CT gantry: each slice shifted 0.5 mm in y
        _write_dicom_series(image, folder, "1.2.3.8", position=lambda z: (0.0, 0.5 * z, 3.0 * z))
    else:  # gaps of 3 mm, then 3.1: each within 5% of the median, yet the grid drifts 0.17 mm
        _write_dicom_series(
            image, folder, "1.2.3.9", position=lambda z: (0.0, 0.0, 3.0 * z + 0.1 * max(0, z - 3))
        )
    with pytest.raises(CohortError, match=match) as excinfo:
        read_image(folder, patient_id="P6", column="dp")
    _error(excinfo, "P6", "dp")
    with pytest.raises(CohortError, match=match):
        validate_cohort(_series_table(folder, mask=_mask_like(image), pid="P6"), ("ap",))


def test_dicom_positions_within_the_slice_tolerance_are_read(tmp_path):
    """Slices off an even grid by less than SLICE_SPACING_TOLERANCE of the spacing (rounding,
    float32 writers) are one volume; just above it they are refused."""
    from p53radiomics.io import SLICE_SPACING_TOLERANCE

    image = _volume(size=(12, 10, 8), spacing=(0.8, 0.8, 3.0), origin=(0.0, 0.0, 0.0))
    jitter = np.array([0, 1, -1, 1, 0, -1, 1, 0]) * 3.0
    for fraction, accepted in ((0.8, True), (1.2, False)):
        off = fraction * SLICE_SPACING_TOLERANCE * jitter
        folder = tmp_path / f"jitter{fraction}"
        _write_dicom_series(
            image, folder, "1.2.3.10", position=lambda z, off=off: (0.0, 0.0, 3.0 * z + off[z])
        )
        if accepted:
            assert read_image(folder).GetSpacing()[2] == pytest.approx(3.0)
        else:
            with pytest.raises(CohortError, match="uneven DICOM slice positions"):
                read_image(folder)


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


def test_read_cohort_csv_keeps_ids_as_written(tmp_path):
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
    _error(excinfo, "001", "ap")
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
    written = sitk.ReadImage(str(path)).GetOrigin()
    validate_cohort(X)
    # load_case hands every step the mask on its image's grid, so that none applies a tolerance
    # of its own (defect 8 of issue 13: PyRadiomics refused what validate_cohort had accepted)
    image, binary = load_case(X, "P1", phases=("ap",))["ap"]
    assert binary.GetOrigin() == image.GetOrigin() and binary.GetSpacing() == image.GetSpacing()
    assert sitk.ReadImage(str(path)).GetOrigin() == written != image.GetOrigin()  # file untouched


def test_one_geometry_tolerance_is_the_default_everywhere():
    import inspect

    assert GEOMETRY_TOLERANCE == 1e-3
    for function, name in (
        (check_geometry, "tolerance"),
        (load_case, "geometry_tolerance"),
        (validate_cohort, "geometry_tolerance"),
    ):
        assert inspect.signature(function).parameters[name].default == GEOMETRY_TOLERANCE
    # relative to the image's smallest voxel spacing for origin and spacing, absolute for cosines
    image = sitk.Image([4, 4, 4], sitk.sitkFloat32)
    image.SetSpacing((0.5, 0.5, 5.0))
    mask = sitk.Image(image)
    mask.SetOrigin((0.0, 0.0, 0.9 * GEOMETRY_TOLERANCE * 0.5))
    assert check_geometry(image, mask) is None
    mask.SetOrigin((0.0, 0.0, 1.1 * GEOMETRY_TOLERANCE * 0.5))
    assert check_geometry(image, mask).startswith("origin differs")
    assert "tolerated: 0.0005 mm, 0.001 of the smallest voxel spacing" in check_geometry(
        image, mask
    )
    mask = sitk.Image(image)
    mask.SetDirection(sitk.VersorTransform((0, 0, 1), 0.9 * GEOMETRY_TOLERANCE).GetMatrix())
    assert check_geometry(image, mask) is None
    mask.SetDirection(sitk.VersorTransform((0, 0, 1), 1.1 * GEOMETRY_TOLERANCE).GetMatrix())
    assert check_geometry(image, mask).startswith("direction differs")


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
