"""The cohort table: read from a cohort CSV (:func:`read_cohort_csv`) and checked, patient by patient
and column by column, before any work (:func:`validate_cohort`)."""

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .._settings import DEFAULT_PHASES, GEOMETRY_TOLERANCE, ID_COLUMN_CANDIDATES
from ..exceptions import CohortError
from ..metrics import binary_labels
from ._geometry import geometry, require_same_geometry
from ._images import geometry_of_cell, is_missing, mask_array_check, mask_on_grid, read_image
from ._phases import check_mask_set, check_phases, is_mask_column, mask_sets, phase_columns
from ._voxels import check_voxel_values

__all__ = ["mask_set_patients", "read_cohort_csv", "validate_cohort"]


def _image_like_columns(columns, phases):
    """The image and mask columns, repeated mask sets' included: they hold paths, not clinical data."""
    return [c for c in columns if c in phases or is_mask_column(c, phases)]


def _filled(X, column):
    """Boolean array: which patients' cells of `column` hold something (see :func:`is_missing`)."""
    return np.asarray([not is_missing(cell) for cell in X[column]], dtype=bool)


def mask_set_patients(X, mask_set, phases=DEFAULT_PHASES, *, require_all=False):
    """The patients of a cohort table who have a set of repeated masks.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table with the mask set's columns (``f"{phase}_mask_{mask_set}"`` or
        ``f"mask_{mask_set}"``; see :func:`phase_columns`).
    mask_set : str
        Name of the set, e.g. ``"reader2"``.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases whose masks the set must hold.
    require_all : bool, default=False
        Raise unless every patient of `X` has the set.

    Returns
    -------
    patients : pandas.Index
        The ids of the patients whose cells of the set are filled, in table order.

    Raises
    ------
    CohortError
        If the set has no column for a phase, if a patient has the set on some phases only, or
        has a repeated mask without a primary mask of the same phase, or (with `require_all`)
        lacks the set: naming the (first) patient and the column.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.io import mask_set_patients
    >>> X = pd.DataFrame(
    ...     {"ap": ["a1", "a2", "a3"], "mask": ["m1", "m2", "m3"], "mask_reader2": ["r1", None, "r3"]},
    ...     index=["P1", "P2", "P3"],
    ... )
    >>> mask_set_patients(X, "reader2", phases=("ap",)).tolist()
    ['P1', 'P3']
    """
    mask_set = check_mask_set(mask_set)
    if mask_set is None:
        raise ValueError("mask_set must name a set of repeated masks, e.g. 'reader2'; got None")
    has_set = _check_mask_set_cells(X, phases, mask_set)
    if require_all and not has_set.all():
        raise CohortError(
            f"no mask of the set {mask_set!r} ({int((~has_set).sum())} of {len(X)} patients lack "
            f"it): select the patients that have it, X.loc[mask_set_patients(X, {mask_set!r})]",
            patient_id=X.index[np.flatnonzero(~has_set)[0]],
            column=phase_columns(X, phases, mask_set)[0].mask,
        )
    return X.index[has_set]


def _check_mask_set_cells(X, phases, mask_set):
    """Which patients have `mask_set`; raise on a partial set or a repeated mask without a primary."""
    primary = {c.phase: c.mask for c in phase_columns(X, phases)}
    repeated = phase_columns(X, phases, mask_set)
    filled = {c.mask: _filled(X, c.mask) for c in repeated}
    has_set = np.logical_or.reduce(list(filled.values()))
    for phase, _, column in repeated:
        if not filled[column][has_set].all():
            row = np.flatnonzero(has_set & ~filled[column])[0]
            others = [c for c, f in filled.items() if f[row]]
            raise CohortError(
                f"the mask set {mask_set!r} is filled in {others} but not in this column: a "
                "patient has a mask set on every phase or on none",
                patient_id=X.index[row],
                column=column,
            )
        lacking = filled[column] & ~_filled(X, primary[phase])
        if lacking.any():
            raise CohortError(
                f"a repeated mask (set {mask_set!r}) on a patient who has no primary mask of phase "
                f"{phase!r} (column {primary[phase]!r} is empty): the repeated ROI repeats the "
                "primary one",
                patient_id=X.index[np.flatnonzero(lacking)[0]],
                column=column,
            )
    return has_set


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
        The cohort table, indexed by patient id, image paths absolute.
    y : pandas.Series
        Only when `label` is given: the label column as read (named after it), indexed like `X`.
        Labels other than 0/1 or booleans need a positive class downstream (see
        :func:`binary_labels`).

    Raises
    ------
    CohortError
        If the id column is missing or holds empty or repeated ids, or `label` is not a column.

    Notes
    -----
    Patient ids are text, kept exactly as written: ``0007`` stays ``"0007"`` (not the number 7),
    in the index and so in every output and error. The image and mask columns are read as text
    too (a DICOM folder may be called ``0007``). Every other column is parsed as pandas does, so
    clinical values stay numeric. An id that pandas reads as missing (an empty cell, ``NA``,
    ``NaN``...) is refused.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from p53radiomics.io import read_cohort_csv
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "cohort.csv").write_text("patient_id,ap,mask,ltd,p53\\n0007,img/0007_ap.nii.gz,img/0007_mask.nii.gz,35.0,1\\n")
    >>> X, y = read_cohort_csv(folder / "cohort.csv", phases=("ap",), label="p53")
    >>> X.index.tolist(), X["ltd"].tolist(), y.tolist()
    (['0007'], [35.0], [1])
    >>> X.loc["0007", "ap"] == str(folder.resolve() / "img" / "0007_ap.nii.gz")
    True
    """
    path = Path(path)
    phases = check_phases(phases)
    columns = list(pd.read_csv(path, nrows=0).columns)  # the header only: which columns are text
    if id_column is None:
        id_column = next((c for c in ID_COLUMN_CANDIDATES if c in columns), columns[0])
    if id_column not in columns:
        raise CohortError(
            f"no id column {id_column!r} in {str(path)!r} (columns: {columns})",
            column=id_column,
        )
    text = [id_column, *(c for c in _image_like_columns(columns, phases) if c != id_column)]
    table = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    ids = table[id_column]
    missing = ids.isna() | (ids.str.strip() == "")
    if missing.any():
        raise CohortError(
            f"row {int(np.flatnonzero(missing)[0]) + 2} of {str(path)!r} has no patient id",
            column=id_column,
        )
    table = table.set_index(id_column)
    _check_unique_index(table, id_column)
    base = path.resolve().parent
    for column in _image_like_columns(table.columns, phases):
        table[column] = [
            cell if is_missing(cell) or Path(str(cell)).is_absolute() else str(base / str(cell))
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


def validate_cohort(
    X,
    phases=DEFAULT_PHASES,
    *,
    y=None,
    required_columns=(),
    check_images=True,
    geometry_tolerance=GEOMETRY_TOLERANCE,
    pos_label=None,
    check_voxels=False,
):
    """Check a cohort table and raise on the first problem, naming the patient and the column.

    Checks, in order: the phases and their columns exist; patient ids are unique; every repeated
    mask set (columns ``f"{phase}_mask_{s}"`` or ``f"mask_{s}"``, see :func:`phase_columns`) has a
    column for every phase, and each patient has it on every phase or none, and only where the
    primary mask of the phase is filled (cells may be empty on patients without the set); each required
    clinical column exists and holds no missing value; `y` is binary, aligned, and its positive
    class known (see :func:`binary_labels`); then, patient by patient, every image file exists and
    opens as a 3D scalar volume (a DICOM folder: one series of evenly spaced slices, see
    :func:`read_image`), every mask is non-empty and holds one label, and each mask shares its
    image's geometry (size, spacing, origin, direction within `geometry_tolerance`), and so does
    every filled repeated mask. Images,
    DICOM slices included, are read from their headers only unless `check_voxels`; masks are read
    whole. The rules are those every step applies when it reads a case (:func:`load_case`,
    :func:`check_voxel_values`).

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
    geometry_tolerance : float, default=GEOMETRY_TOLERANCE
        See :func:`check_geometry`.
    pos_label : object, default=None
        The positive class of `y`, needed unless its labels are 0/1 or booleans (see
        :func:`binary_labels`).
    check_voxels : bool, default=False
        Also read every image whole and refuse non-finite or constant ones
        (:func:`check_voxel_values`), as the preprocessing steps do: slower (each image is read
        once more), but such a patient is then found before any work.

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
    repeated = {s: _check_mask_set_cells(X, phases, s) for s in mask_sets(X.columns, phases)}
    repeated_columns = {s: phase_columns(X, phases, s) for s in repeated}
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
        binary_labels(y, X.index, pos_label=pos_label)
    if not check_images:
        return X
    for i, (patient_id, row) in enumerate(zip(X.index, X.itertuples(index=False), strict=True)):
        cells = dict(zip(X.columns, row, strict=True))
        masks, images = {}, {}  # a shared mask column, an image, read once per patient
        pairs = [*columns, *(c for s, cs in repeated_columns.items() if repeated[s][i] for c in cs)]
        for _, image_col, mask_col in pairs:
            if image_col in images:
                image_info = images[image_col]
            elif check_voxels:
                image = read_image(cells[image_col], patient_id=patient_id, column=image_col)
                check_voxel_values(image, patient_id=patient_id, column=image_col)
                image_info = images[image_col] = geometry(image)
            else:
                image_info = geometry_of_cell(cells[image_col], patient_id, image_col)
                images[image_col] = image_info
            key = (mask_col, image_col)  # a shared SEG/RTSTRUCT mask lands on each phase's grid
            if key not in masks:
                masks[key] = mask_on_grid(cells[mask_col], image_info, patient_id, mask_col)
                mask_array_check(sitk.GetArrayViewFromImage(masks[key]), patient_id, mask_col)
            mask = masks[key]
            require_same_geometry(
                image_info,
                geometry(mask),
                geometry_tolerance,
                patient_id=patient_id,
                image_column=image_col,
                mask_column=mask_col,
            )
    return X
