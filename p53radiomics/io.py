"""Images in and out, and the cohort table.

This is the one place where an image or mask cell of a cohort table is read. A cell is either a path
(any format SimpleITK reads: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``..., or a folder holding exactly
one DICOM series) or an in-memory :class:`SimpleITK.Image`. Every step of the library reads cells
through :func:`read_image`, :func:`read_mask` or :func:`load_case`, so they all accept the same things
and fail with the same messages, which name the patient id and the column.

The cohort table (see the user guide) is a :class:`pandas.DataFrame` with one row per patient, its
index holding unique patient ids. For each phase ``p`` the column ``p`` holds the image and
``f"{p}_mask"`` the tumour ROI; where a phase has no mask column of its own, the column ``mask``
serves all phases. Every other column is clinical.
"""

import math
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .exceptions import CohortError

__all__ = [
    "DEFAULT_PHASES",
    "PhaseColumns",
    "check_binary_target",
    "check_geometry",
    "load_case",
    "phase_columns",
    "read_cohort_csv",
    "read_image",
    "read_mask",
    "validate_cohort",
]

#: The three dynamic phases of the study: arterial, portal venous and delayed.
DEFAULT_PHASES = ("ap", "pvp", "dp")

#: Names tried, in this order, for the id column of a cohort CSV when none is given.
ID_COLUMN_CANDIDATES = ("patient_id", "id", "case_id", "subject_id", "patient")

#: Image and mask columns of one phase.
PhaseColumns = namedtuple("PhaseColumns", ["phase", "image", "mask"])

_GeometryInfo = namedtuple(
    "_GeometryInfo", ["size", "spacing", "origin", "direction", "components"]
)


# --------------------------------------------------------------------------------------------------
# Phases and columns
# --------------------------------------------------------------------------------------------------
def _check_phases(phases):
    if isinstance(phases, str) or not hasattr(phases, "__iter__"):
        raise TypeError(
            f"phases must be a sequence of phase names, e.g. ('ap', 'pvp', 'dp'); got {phases!r}"
        )
    phases = tuple(phases)
    if not phases:
        raise ValueError("phases must name at least one phase")
    bad = [p for p in phases if not isinstance(p, str) or not p]
    if bad:
        raise TypeError(f"phase names must be non-empty strings; got {bad!r}")
    dupes = sorted({p for p in phases if phases.count(p) > 1})
    if dupes:
        raise ValueError(f"phase names must be unique; repeated: {dupes!r}")
    return phases


def phase_columns(X, phases=DEFAULT_PHASES):
    """Resolve the image and mask column of each phase.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phase names; each must be a column of `X`.

    Returns
    -------
    columns : list of PhaseColumns
        One ``(phase, image, mask)`` named tuple per phase, in the order given. ``mask`` is
        ``f"{phase}_mask"`` when that column exists, else ``"mask"``.

    Raises
    ------
    CohortError
        If a phase has no column in `X` (an unknown phase name), or neither ``f"{phase}_mask"`` nor
        ``"mask"`` exists. Every missing column is listed at once.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.io import phase_columns
    >>> X = pd.DataFrame({"ap": ["a.nii"], "pvp": ["p.nii"], "mask": ["m.nii"], "ap_mask": ["am.nii"]})
    >>> phase_columns(X, phases=("ap", "pvp"))
    [PhaseColumns(phase='ap', image='ap', mask='ap_mask'), PhaseColumns(phase='pvp', image='pvp', mask='mask')]
    """
    phases = _check_phases(phases)
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"the cohort table must be a pandas DataFrame, got {type(X).__name__}")
    problems = []  # (message, column): every missing column is reported at once
    result = []
    for phase in phases:
        if phase not in X.columns:
            problems.append((f"unknown phase {phase!r}: no column {phase!r}", phase))
            continue
        mask = f"{phase}_mask" if f"{phase}_mask" in X.columns else "mask"
        if mask not in X.columns:
            problems.append(
                (
                    f"phase {phase!r} has no mask: neither column {phase + '_mask'!r} nor 'mask'",
                    f"{phase}_mask",
                )
            )
            continue
        result.append(PhaseColumns(phase, phase, mask))
    if problems:
        raise CohortError(
            "; ".join(m for m, _ in problems)
            + f" (the table's columns are {list(map(str, X.columns))})",
            column=problems[0][1],
        )
    return result


# --------------------------------------------------------------------------------------------------
# Reading one cell
# --------------------------------------------------------------------------------------------------
def _is_missing(cell):
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def _sitk_reason(exc):
    """The informative first line of a SimpleITK exception."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "ERROR" in ln.upper() or "exception" in ln.lower():
            continue
        return ln
    return lines[-1] if lines else type(exc).__name__


def _dicom_series_files(folder, patient_id, column):
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise CohortError(
            f"folder {str(folder)!r} holds no DICOM series", patient_id=patient_id, column=column
        )
    if len(ids) > 1:
        raise CohortError(
            f"folder {str(folder)!r} holds {len(ids)} DICOM series; give the folder of a single series",
            patient_id=patient_id,
            column=column,
        )
    return sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])


def _check_path(cell, patient_id, column):
    if _is_missing(cell):
        raise CohortError(
            "no image given (the cell is empty)", patient_id=patient_id, column=column
        )
    if not isinstance(cell, str | os.PathLike):
        raise CohortError(
            f"a cell must be a path or a SimpleITK.Image, got {type(cell).__name__}",
            patient_id=patient_id,
            column=column,
        )
    path = Path(cell)
    if not path.exists():
        raise CohortError(f"file not found: {str(path)!r}", patient_id=patient_id, column=column)
    return path


def _check_image_kind(image, patient_id, column):
    if image.GetDimension() != 3:
        raise CohortError(
            f"expected a 3D volume, got a {image.GetDimension()}D image",
            patient_id=patient_id,
            column=column,
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CohortError(
            f"expected a scalar (grey-level) image, got {image.GetNumberOfComponentsPerPixel()} components per pixel",
            patient_id=patient_id,
            column=column,
        )
    return image


def read_image(cell, *, patient_id=None, column=None):
    """Read one image cell of a cohort table.

    Parameters
    ----------
    cell : str, os.PathLike or SimpleITK.Image
        A file SimpleITK reads (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``...), a folder holding one DICOM
        series, or an image already in memory (returned as it is, never modified).
    patient_id : object, default=None
        Row of the cell, named in errors.
    column : str, default=None
        Column of the cell, named in errors.

    Returns
    -------
    image : SimpleITK.Image
        A 3D scalar image.

    Raises
    ------
    CohortError
        If the cell is empty, the file does not exist or cannot be read, a folder holds no or several
        DICOM series, or the image is not a 3D scalar volume.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> from p53radiomics.io import read_image
    >>> image = sitk.Image([8, 8, 4], sitk.sitkFloat32)
    >>> read_image(image) is image
    True
    >>> read_image("no/such/file.nii.gz", patient_id="P1", column="ap")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P1', column 'ap': file not found: 'no/such/file.nii.gz'
    """
    if isinstance(cell, sitk.Image):
        return _check_image_kind(cell, patient_id, column)
    path = _check_path(cell, patient_id, column)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(_dicom_series_files(path, patient_id, column))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read image {str(path)!r}: {_sitk_reason(exc)}",
            patient_id=patient_id,
            column=column,
        ) from exc
    return _check_image_kind(image, patient_id, column)


def _mask_array_check(array, patient_id, column):
    """Return the one label value of a mask array, or raise."""
    nonzero = array[array != 0]
    if nonzero.size == 0:
        raise CohortError("mask is empty (no non-zero voxel)", patient_id=patient_id, column=column)
    first = nonzero.flat[0]
    if np.any(nonzero != first):
        labels = np.unique(nonzero)
        shown = ", ".join(f"{v:g}" for v in labels[:10]) + (", ..." if labels.size > 10 else "")
        raise CohortError(
            f"mask holds {labels.size} labels ({shown}); give one label per mask (non-zero = tumour)",
            patient_id=patient_id,
            column=column,
        )
    return first


def read_mask(cell, *, patient_id=None, column=None):
    """Read one mask cell and check that it is a usable tumour ROI.

    Parameters
    ----------
    cell : str, os.PathLike or SimpleITK.Image
        As for :func:`read_image`.
    patient_id : object, default=None
        Row of the cell, named in errors.
    column : str, default=None
        Column of the cell, named in errors.

    Returns
    -------
    mask : SimpleITK.Image
        A ``sitkUInt8`` image, 1 inside the ROI and 0 outside, with the geometry of the input. A new
        image: the input is never modified.

    Raises
    ------
    CohortError
        As :func:`read_image`, and also if the mask is empty or holds several labels.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> from p53radiomics.io import read_mask
    >>> mask = sitk.Image([8, 8, 4], sitk.sitkUInt16)
    >>> read_mask(mask, patient_id="P2", column="ap_mask")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P2', column 'ap_mask': mask is empty (no non-zero voxel)
    >>> mask[4, 4, 2] = 7
    >>> int(sitk.GetArrayFromImage(read_mask(mask)).sum())
    1
    """
    image = read_image(cell, patient_id=patient_id, column=column)
    _mask_array_check(sitk.GetArrayViewFromImage(image), patient_id, column)
    return sitk.Cast(image != 0, sitk.sitkUInt8)


def _geometry(image):
    return _GeometryInfo(
        tuple(image.GetSize()),
        tuple(image.GetSpacing()),
        tuple(image.GetOrigin()),
        tuple(image.GetDirection()),
        image.GetNumberOfComponentsPerPixel(),
    )


def _geometry_of_cell(cell, patient_id, column):
    """Geometry of an image cell, reading only the header of a file where possible."""
    if isinstance(cell, sitk.Image):
        return _geometry(_check_image_kind(cell, patient_id, column))
    path = _check_path(cell, patient_id, column)
    if path.is_dir():
        return _geometry(read_image(path, patient_id=patient_id, column=column))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read image {str(path)!r}: {_sitk_reason(exc)}",
            patient_id=patient_id,
            column=column,
        ) from exc
    info = _GeometryInfo(
        tuple(reader.GetSize()),
        tuple(reader.GetSpacing()),
        tuple(reader.GetOrigin()),
        tuple(reader.GetDirection()),
        reader.GetNumberOfComponents(),
    )
    if len(info.size) != 3:
        raise CohortError(
            f"expected a 3D volume, got a {len(info.size)}D image",
            patient_id=patient_id,
            column=column,
        )
    if info.components != 1:
        raise CohortError(
            f"expected a scalar (grey-level) image, got {info.components} components per pixel",
            patient_id=patient_id,
            column=column,
        )
    return info


def check_geometry(image, mask, *, tolerance=1e-3):
    """Describe how a mask's geometry differs from its image's, or return ``None`` when they match.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The two images to compare.
    tolerance : float, default=1e-3
        Allowed difference of spacing and origin, as a fraction of the image's smallest voxel
        spacing, and of each direction cosine. Sizes must be equal.

    Returns
    -------
    difference : str or None
        ``None`` when the geometries agree, else a sentence giving both values of the first attribute
        that differs.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> from p53radiomics.io import check_geometry
    >>> a = sitk.Image([8, 8, 4], sitk.sitkFloat32)
    >>> b = sitk.Image([8, 8, 4], sitk.sitkUInt8)
    >>> check_geometry(a, b) is None
    True
    >>> b.SetSpacing((1.0, 1.0, 3.0))
    >>> check_geometry(a, b)
    'spacing differs: image (1, 1, 1), mask (1, 1, 3)'
    """
    return _geometry_difference(_geometry(image), _geometry(mask), tolerance)


def _fmt(values):
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _geometry_difference(a, b, tolerance):
    if a.size != b.size:
        return f"size differs: image {_fmt(a.size)}, mask {_fmt(b.size)}"
    scale = tolerance * min(a.spacing)
    if np.max(np.abs(np.subtract(a.spacing, b.spacing))) > scale:
        return f"spacing differs: image {_fmt(a.spacing)}, mask {_fmt(b.spacing)}"
    if np.max(np.abs(np.subtract(a.origin, b.origin))) > scale:
        return f"origin differs: image {_fmt(a.origin)}, mask {_fmt(b.origin)}"
    if np.max(np.abs(np.subtract(a.direction, b.direction))) > tolerance:
        return f"direction differs: image {_fmt(a.direction)}, mask {_fmt(b.direction)}"
    return None


def load_case(X, patient_id, phases=DEFAULT_PHASES, *, geometry_tolerance=1e-3):
    """Read and check the images and masks of one patient.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    patient_id : object
        Index value of the row to read.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases to read.
    geometry_tolerance : float, default=1e-3
        See :func:`check_geometry`.

    Returns
    -------
    case : dict
        ``{phase: (image, mask)}``, the image as read (see :func:`read_image`) and the mask as a
        binary ``sitkUInt8`` image (see :func:`read_mask`).

    Raises
    ------
    CohortError
        On the first problem: an unreadable or missing file, an empty mask, a mask with several
        labels, or a mask whose geometry differs from its image's. The error names `patient_id` and
        the column.

    Examples
    --------
    >>> import pandas as pd, SimpleITK as sitk
    >>> from p53radiomics.io import load_case
    >>> image = sitk.Image([8, 8, 4], sitk.sitkFloat32)
    >>> mask = sitk.Image([8, 8, 4], sitk.sitkUInt8)
    >>> mask[2:5, 2:5, 1:3] = 1
    >>> X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    >>> case = load_case(X, "P1", phases=("ap",))
    >>> sorted(case)
    ['ap']
    """
    columns = phase_columns(X, phases)
    row = X.loc[patient_id]
    case = {}
    for phase, image_col, mask_col in columns:
        image = read_image(row[image_col], patient_id=patient_id, column=image_col)
        mask = read_mask(row[mask_col], patient_id=patient_id, column=mask_col)
        diff = _geometry_difference(_geometry(image), _geometry(mask), geometry_tolerance)
        if diff is not None:
            raise CohortError(
                f"mask and image {image_col!r} do not share geometry: {diff}",
                patient_id=patient_id,
                column=mask_col,
            )
        case[phase] = (image, mask)
    return case


# --------------------------------------------------------------------------------------------------
# The cohort table
# --------------------------------------------------------------------------------------------------
def _image_like_columns(columns, phases):
    wanted = set(phases) | {f"{p}_mask" for p in phases} | {"mask"}
    return [c for c in columns if c in wanted]


def read_cohort_csv(path, *, id_column=None, phases=DEFAULT_PHASES, label=None):
    """Read a cohort CSV into a cohort table.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file: one row per patient, an id column, the image and mask columns of each phase,
        and clinical columns.
    id_column : str, default=None
        Column holding the patient ids; it becomes the index. ``None`` takes the first of
        ``patient_id``, ``id``, ``case_id``, ``subject_id``, ``patient`` that exists, else the first
        column.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases whose image and mask columns (``p``, ``f"{p}_mask"``, ``mask``) hold paths. Relative
        paths in those columns are resolved against the CSV's folder.
    label : str, default=None
        If given, this column is removed from the table and returned as ``y``.

    Returns
    -------
    X : pandas.DataFrame
        The cohort table, indexed by patient id (as strings), image paths absolute.
    y : pandas.Series
        Only when `label` is given: the label column, indexed like `X`.

    Raises
    ------
    CohortError
        If the id column is missing or holds empty or repeated ids, or `label` is not a column.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from p53radiomics.io import read_cohort_csv
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "cohort.csv").write_text("patient_id,ap,mask,ltd,p53\\nP1,img/P1_ap.nii.gz,img/P1_mask.nii.gz,35.0,1\\n")
    >>> X, y = read_cohort_csv(folder / "cohort.csv", phases=("ap",), label="p53")
    >>> X.index.tolist(), y.tolist()
    (['P1'], [1])
    >>> X.loc["P1", "ap"] == str(folder.resolve() / "img" / "P1_ap.nii.gz")
    True
    """
    path = Path(path)
    phases = _check_phases(phases)
    table = pd.read_csv(path, dtype={id_column: str} if id_column else None)
    if id_column is None:
        id_column = next((c for c in ID_COLUMN_CANDIDATES if c in table.columns), table.columns[0])
    if id_column not in table.columns:
        raise CohortError(
            f"no id column {id_column!r} in {str(path)!r} (columns: {list(table.columns)})",
            column=id_column,
        )
    ids = table[id_column]
    missing = ids.isna()
    if missing.any():
        raise CohortError(
            f"row {int(np.flatnonzero(missing)[0]) + 2} of {str(path)!r} has no patient id",
            column=id_column,
        )
    table[id_column] = ids.astype(str)
    table = table.set_index(id_column)
    _check_unique_index(table, id_column)
    base = path.resolve().parent
    for column in _image_like_columns(table.columns, phases):
        table[column] = [
            cell if _is_missing(cell) or Path(str(cell)).is_absolute() else str(base / str(cell))
            for cell in table[column]
        ]
    if label is None:
        return table
    if label not in table.columns:
        raise CohortError(f"no label column {label!r} in {str(path)!r}", column=label)
    y = table.pop(label)
    return table, y


def _check_unique_index(X, column=None):
    duplicated = X.index[X.index.duplicated()]
    if len(duplicated):
        raise CohortError(
            f"patient ids must be unique; repeated: {sorted(map(str, set(duplicated)))[:10]}",
            patient_id=duplicated[0],
            column=column,
        )


def check_binary_target(y, index=None):
    """Check that `y` is a binary label aligned with a cohort table.

    Parameters
    ----------
    y : array-like of shape (n_patients,)
        Labels (1 = P53-mutated).
    index : pandas.Index, default=None
        The cohort table's index; when `y` is a Series its index must hold the same ids.

    Returns
    -------
    y : numpy.ndarray
        The labels as an array, in the order of `index`.

    Raises
    ------
    CohortError
        If `y` holds a missing value (naming the patient), has another length than the table, or
        does not hold exactly two classes.

    Examples
    --------
    >>> from p53radiomics.io import check_binary_target
    >>> check_binary_target([0, 1, 1])
    array([0, 1, 1])
    >>> check_binary_target([1, 1, 1])
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: y holds a single class (1); a binary label with both classes is needed
    """
    if isinstance(y, pd.Series) and index is not None:
        if len(y) != len(index):
            raise CohortError(f"y has {len(y)} labels for {len(index)} patients")
        if not y.index.equals(index):
            unknown = index.difference(y.index)
            if len(unknown):
                raise CohortError(
                    "no label for this patient in y", patient_id=unknown[0], column="y"
                )
            y = y.loc[index]
    values = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y.to_numpy())
    if index is not None and len(values) != len(index):
        raise CohortError(f"y has {len(values)} labels for {len(index)} patients")
    missing = values.isna().to_numpy()
    if missing.any():
        where = (
            index[np.flatnonzero(missing)[0]]
            if index is not None
            else int(np.flatnonzero(missing)[0])
        )
        raise CohortError("label is missing", patient_id=where, column="y")
    classes = pd.unique(values)
    if len(classes) != 2:
        shown = ", ".join(map(str, classes))
        if len(classes) == 1:
            raise CohortError(
                f"y holds a single class ({shown}); a binary label with both classes is needed"
            )
        raise CohortError(f"y must be binary, got {len(classes)} classes ({shown})")
    return values.to_numpy()


def validate_cohort(
    X,
    phases=DEFAULT_PHASES,
    *,
    y=None,
    required_columns=(),
    check_images=True,
    geometry_tolerance=1e-3,
):
    """Check a cohort table and raise on the first problem, naming the patient and the column.

    Checks, in order: the phases and their columns exist; patient ids are unique; each required
    clinical column exists and holds no missing value; `y` is binary and aligned; then, patient by
    patient, every image file exists and opens as a 3D scalar volume, every mask is non-empty and
    holds one label, and each mask shares its image's geometry (size, spacing, origin, direction
    within `geometry_tolerance`). Images are read from their headers only; masks are read whole.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases that must be present.
    y : array-like of shape (n_patients,), default=None
        Labels to check with `X`.
    required_columns : sequence of str, default=()
        Clinical columns that must exist and hold no missing value.
    check_images : bool, default=True
        Whether to open every image and mask (set to ``False`` for the table-level checks only).
    geometry_tolerance : float, default=1e-3
        See :func:`check_geometry`.

    Returns
    -------
    X : pandas.DataFrame
        The same table, unchanged, so that the call can be chained.

    Raises
    ------
    CohortError
        On the first problem found (a :class:`ValueError`).

    Examples
    --------
    >>> import pandas as pd, SimpleITK as sitk
    >>> from p53radiomics.io import validate_cohort
    >>> image = sitk.Image([8, 8, 4], sitk.sitkFloat32)
    >>> mask = sitk.Image([8, 8, 4], sitk.sitkUInt8)
    >>> mask[2:5, 2:5, 1:3] = 1
    >>> X = pd.DataFrame({"ap": [image], "mask": [mask], "ltd": [float("nan")]}, index=["P1"])
    >>> _ = validate_cohort(X, phases=("ap",))
    >>> validate_cohort(X, phases=("ap",), required_columns=["ltd"])
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P1', column 'ltd': missing value in a required clinical column
    """
    columns = phase_columns(X, phases)
    _check_unique_index(X)
    for column in required_columns:
        if column not in X.columns:
            raise CohortError(f"required clinical column {column!r} is missing", column=column)
        missing = X[column].isna().to_numpy()
        if missing.any():
            raise CohortError(
                "missing value in a required clinical column",
                patient_id=X.index[np.flatnonzero(missing)[0]],
                column=column,
            )
    if y is not None:
        check_binary_target(y, X.index)
    if not check_images:
        return X
    for patient_id, row in zip(X.index, X.itertuples(index=False), strict=True):
        cells = dict(zip(X.columns, row, strict=True))
        masks = {}  # a shared "mask" column is read once per patient
        for _, image_col, mask_col in columns:
            image_info = _geometry_of_cell(cells[image_col], patient_id, image_col)
            if mask_col not in masks:
                masks[mask_col] = read_image(
                    cells[mask_col], patient_id=patient_id, column=mask_col
                )
                _mask_array_check(sitk.GetArrayViewFromImage(masks[mask_col]), patient_id, mask_col)
            mask = masks[mask_col]
            diff = _geometry_difference(image_info, _geometry(mask), geometry_tolerance)
            if diff is not None:
                raise CohortError(
                    f"mask and image {image_col!r} do not share geometry: {diff}",
                    patient_id=patient_id,
                    column=mask_col,
                )
    return X
