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

Two tolerances govern what is taken as the same geometry, each in one place:
:data:`GEOMETRY_TOLERANCE` (a mask against its image, for every step) and
:data:`SLICE_SPACING_TOLERANCE` (the slices of a DICOM series against an evenly spaced grid).
"""

import math
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .exceptions import CohortError
from .metrics import binary_labels, check_binary_target
from .utils._sitk import sitk_reason

__all__ = [
    "DEFAULT_PHASES",
    "GEOMETRY_TOLERANCE",
    "SLICE_SPACING_TOLERANCE",
    "PhaseColumns",
    "binary_labels",
    "check_binary_target",
    "check_geometry",
    "check_voxel_values",
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

#: How far a mask's geometry may be from its image's and still be taken as the image's grid. Origin
#: and spacing: a fraction of the image's smallest voxel spacing (1e-3 of a 0.8-mm voxel is 0.8 µm,
#: far above the float rounding of file formats and converters, far below anything anatomical).
#: Direction cosines: an absolute difference (1e-3 is about 0.06°). Sizes must be equal. It is the
#: default ``geometry_tolerance`` of :func:`check_geometry`, :func:`load_case` and
#: :func:`validate_cohort`; every step reads its cases through :func:`load_case`, which, once a mask
#: passes, gives it its image's geometry exactly, so no later step (N4, resampling, cropping,
#: PyRadiomics) applies a tolerance of its own.
GEOMETRY_TOLERANCE = 1e-3

#: How far a slice of a DICOM series may lie from its place on the evenly spaced grid that the
#: series is read onto, as a fraction of the slice spacing; also the largest in-plane shift between
#: slices, as a fraction of the pixel spacing. A missing slice puts the slices after it a whole
#: spacing off; positions written with two decimals (0.005 mm rounding) stay far below it.
SLICE_SPACING_TOLERANCE = 0.05

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


def _mm(value):
    return f"{value:.4g}"


def _dicom_header(file, patient_id, column):
    """The header of one DICOM file, read without its pixels."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")  # GDCM listed it as DICOM: no probing of every format
    reader.SetFileName(str(file))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read DICOM file {str(file)!r}: {sitk_reason(exc)}",
            patient_id=patient_id,
            column=column,
        ) from exc
    return reader


def _dicom_numbers(reader, tag, count):
    """A multi-valued DICOM decimal-string tag as floats, or None if absent or malformed."""
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        values = np.array([float(v) for v in reader.GetMetaData(tag).strip().split("\\")])
    except ValueError:
        return None
    return values if values.size == count and np.all(np.isfinite(values)) else None


def _describe_series(folder, uid, patient_id, column):
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
    header = _dicom_header(files[0], patient_id, column)
    description = (
        header.GetMetaData("0008|103e").strip() if header.HasMetaDataKey("0008|103e") else ""
    )
    shown = repr(description) if description else "no SeriesDescription"
    return f"{uid} ({shown}, {len(files)} {'slice' if len(files) == 1 else 'slices'})"


def _dicom_series(folder, patient_id, column):
    """The files of the one DICOM series in `folder`, in slice order, and the volume's geometry.

    Reads the headers only. A series whose slices are not evenly spaced along their normal
    (ImagePositionPatient projected on the normal of ImageOrientationPatient), not stacked along
    that normal, of different orientations or sizes, or with two slices at one position, cannot be
    one volume: ITK would read it with a made-up slice spacing, so it is refused here, with the
    gap named. Used by :func:`read_image` and by :func:`validate_cohort`, so both apply the same
    rule (:data:`SLICE_SPACING_TOLERANCE`).
    """
    folder = str(folder)
    where = {"patient_id": patient_id, "column": column}
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
        if len(ids) > 1:
            described = "; ".join(_describe_series(folder, uid, **where) for uid in ids)
            raise CohortError(
                f"folder {folder!r} holds {len(ids)} DICOM series: {described}; "
                "give the folder of a single series",
                **where,
            )
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, ids[0]) if ids else ()
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read the DICOM files of {folder!r}: {sitk_reason(exc)}", **where
        ) from exc
    if not files:
        raise CohortError(f"folder {folder!r} holds no DICOM series", **where)
    headers = [_dicom_header(f, **where) for f in files]
    first = headers[0]
    if len(files) == 1:
        return list(files), _GeometryInfo(
            tuple(first.GetSize()),
            tuple(first.GetSpacing()),
            tuple(first.GetOrigin()),
            tuple(first.GetDirection()),
            first.GetNumberOfComponents(),
        )

    def name(i):  # of a file, for the messages; `files` is put in slice order below
        return repr(Path(files[i]).name)

    positions, orientations = [], []
    for i, header in enumerate(headers):
        position = _dicom_numbers(header, "0020|0032", 3)
        orientation = _dicom_numbers(header, "0020|0037", 6)
        if position is None or orientation is None:
            missing = "ImagePositionPatient (0020,0032)" if position is None else ""
            missing += " and " if position is None and orientation is None else ""
            missing += "ImageOrientationPatient (0020,0037)" if orientation is None else ""
            raise CohortError(
                f"DICOM file {name(i)} of {folder!r} has no valid {missing}: the positions of the "
                f"{len(files)} slices, and so the volume's geometry, are unknown",
                **where,
            )
        if tuple(header.GetSize()[:2]) != tuple(first.GetSize()[:2]) or header.GetSize()[2] != 1:
            raise CohortError(
                f"DICOM files {name(0)} and {name(i)} of {folder!r} have different sizes "
                f"({_fmt(first.GetSize())} and {_fmt(header.GetSize())}): not one volume",
                **where,
            )
        positions.append(position)
        orientations.append(orientation)
    positions, orientations = np.array(positions), np.array(orientations)
    pixel = np.array([h.GetSpacing()[:2] for h in headers])
    odd = np.flatnonzero(
        (np.max(np.abs(orientations - orientations[0]), axis=1) > GEOMETRY_TOLERANCE)
        | (np.max(np.abs(pixel - pixel[0]), axis=1) > GEOMETRY_TOLERANCE * pixel[0].min())
    )
    if odd.size:
        raise CohortError(
            f"DICOM files {name(0)} and {name(odd[0])} of {folder!r} differ in orientation or "
            "pixel spacing (ImageOrientationPatient, PixelSpacing): the folder mixes acquisitions",
            **where,
        )
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    if not np.linalg.norm(normal) > 0.5:  # two unit vectors at right angles give 1
        raise CohortError(
            f"DICOM file {name(0)} of {folder!r}: its ImageOrientationPatient "
            f"{_fmt(orientations[0])} is not two orthogonal unit vectors, so the slice normal and "
            "the volume's geometry are unknown",
            **where,
        )
    normal /= np.linalg.norm(normal)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    positions, along = positions[order], along[order]
    n = len(files)
    gaps = np.diff(along)
    typical = float(np.median(gaps))
    same = np.flatnonzero(gaps <= SLICE_SPACING_TOLERANCE * typical)
    if same.size:
        i = int(same[0])
        raise CohortError(
            f"DICOM slices {i + 1} and {i + 2} of {n} in {folder!r} (files {name(i)} and "
            f"{name(i + 1)}) lie at the same position along the slice normal "
            f"({_mm(along[i])} mm): the series holds several images per position (time points, "
            "echoes or repeated acquisitions); put each volume in a folder of its own",
            **where,
        )
    offsets = positions - positions[0]
    shear = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if shear.max() > SLICE_SPACING_TOLERANCE * pixel[0].min():
        i = int(np.argmax(shear))
        raise CohortError(
            f"DICOM slices of {folder!r} are not stacked along their normal: slice {i + 1} of {n} "
            f"(file {name(i)}) is shifted by {_mm(shear[i])} mm within the slice plane from slice 1 "
            "(a tilted CT gantry or a sheared stack), which a volume cannot represent; resample "
            "the series onto a regular grid first",
            **where,
        )
    spacing = float(np.linalg.norm(positions[-1] - positions[0]) / (n - 1))
    step = (along[-1] - along[0]) / (n - 1)
    deviation = np.abs(along - (along[0] + step * np.arange(n)))
    if deviation.max() > SLICE_SPACING_TOLERANCE * step:
        uneven = np.flatnonzero(np.abs(gaps - typical) > SLICE_SPACING_TOLERANCE * typical)
        if uneven.size and uneven.size < gaps.size:
            said = ", ".join(
                f"slices {i + 1} and {i + 2} (files {name(i)} and {name(i + 1)}) are "
                f"{_mm(gaps[i])} mm apart"
                for i in uneven[:3]
            )
            said += f"{', ...' if uneven.size > 3 else ''} where the others are {_mm(typical)} mm"
        else:
            said = f"the slice gaps range from {_mm(gaps.min())} to {_mm(gaps.max())} mm"
        raise CohortError(
            f"uneven DICOM slice positions in {folder!r} ({n} slices, positions along the slice "
            f"normal from {_mm(along[0])} to {_mm(along[-1])} mm): {said}. Read as one volume, "
            f"the series would get a made-up slice spacing of {_mm(step)} mm, with slices up to "
            f"{_mm(deviation.max())} mm from their true place (tolerated: "
            f"{SLICE_SPACING_TOLERANCE:.0%} of the spacing). A slice is missing or the folder "
            "mixes acquisitions: export the complete series, or resample it onto an even grid",
            **where,
        )
    return files, _GeometryInfo(
        (*first.GetSize()[:2], n),
        (*headers[0].GetSpacing()[:2], spacing),
        tuple(headers[0].GetOrigin()),
        tuple(headers[0].GetDirection()),
        first.GetNumberOfComponents(),
    )


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
        If the cell is empty, the file does not exist or cannot be read, a folder holds no DICOM
        series or several (each named: SeriesInstanceUID, SeriesDescription, number of slices),
        the slices of its series are not one regular volume (see Notes), or the image is not a 3D
        scalar volume.

    Notes
    -----
    The slices of a DICOM series are put in order by their position along the slice normal
    (ImagePositionPatient projected on the cross product of the two ImageOrientationPatient
    vectors), whatever the file names or InstanceNumbers. They must then make one volume: the same
    orientation, pixel spacing and size; no two at one position; stacked along the normal; and
    evenly spaced, each slice within :data:`SLICE_SPACING_TOLERANCE` of the slice spacing from its
    place on an even grid. A series with a missing slice breaks the last rule and is refused with
    the gap named, where ITK alone would read it with a made-up, averaged spacing. The same
    function checks the headers in :func:`validate_cohort`.

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
            reader.SetFileNames(_dicom_series(path, patient_id, column)[0])
            # the slices are checked to lie within this fraction of the spacing of an even grid:
            # ITK need not warn of smaller deviations (its default warns from 1e-4)
            reader.SetSpacingWarningRelThreshold(SLICE_SPACING_TOLERANCE)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read image {str(path)!r}: {sitk_reason(exc)}",
            patient_id=patient_id,
            column=column,
        ) from exc
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        _nifti_non_finite(path, patient_id, column)
    return _check_image_kind(image, patient_id, column)


def check_voxel_values(image, *, patient_id=None, column=None, allow_constant=False):
    """Raise if `image` has a non-finite voxel or, unless allowed, the same value everywhere.

    Parameters
    ----------
    image : SimpleITK.Image
        A scalar image (any pixel type; integer images are always finite).
    patient_id : object, default=None
        Row of the image's cell, named in the error.
    column : str, default=None
        Column of the image's cell, named in the error.
    allow_constant : bool, default=False
        Accept an image whose voxels all hold the same (finite) value.

    Returns
    -------
    image : SimpleITK.Image
        `image` itself, unchanged.

    Raises
    ------
    CohortError
        Naming `patient_id` and `column`: the image holds NaN or infinite voxels (how many of each,
        and where the first one is, as a voxel index ``(x, y, z)``), or it is constant.

    Notes
    -----
    An image with a non-finite voxel, which N4, resampling and every statistic would spread
    through their output, or a constant one, which carries no anatomy (a normalisation would
    divide by zero, or after N4 turn rounding noise into values that look like tissue), is refused
    by every step that reads whole images (:class:`~p53radiomics.N4Resampler`,
    :class:`~p53radiomics.LargestSliceCropper`), and by :func:`validate_cohort` with
    ``check_voxels=True``. NIfTI files are checked on their stored values: ITK 5's NIfTI reader
    turns NaN and infinite voxels into 0 as it reads (fixed in ITK 6), which would hide them
    (:func:`read_image` refuses such a file).

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> from p53radiomics.io import check_voxel_values
    >>> array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    >>> image = check_voxel_values(sitk.GetImageFromArray(array))
    >>> array[1, 2, 3] = np.nan
    >>> check_voxel_values(sitk.GetImageFromArray(array), patient_id="P1", column="ap")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P1', column 'ap': the image holds 1 NaN and 0 infinite voxels (of 24; the first at voxel index (3, 2, 1)): fix or mask them in the image file before preprocessing
    >>> check_voxel_values(sitk.Image([4, 3, 2], sitk.sitkFloat32), patient_id="P1", column="ap")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P1', column 'ap': the image is constant (every voxel is 0): it holds no anatomy to preprocess
    """
    array = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    # min and max are NaN or infinite exactly where some voxel is: two passes without a bool array
    low, high = array.min(), array.max()
    if np.issubdtype(array.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        finite = np.isfinite(array)
        n_nan = int(np.count_nonzero(np.isnan(array)))
        n_inf = int(finite.size - np.count_nonzero(finite)) - n_nan
        first = np.unravel_index(int(np.argmin(finite)), array.shape)[::-1]
        raise CohortError(
            f"the image holds {n_nan} NaN and {n_inf} infinite voxels (of {array.size}; the first "
            f"at voxel index {tuple(int(i) for i in first)}): fix or mask them in the image file "
            "before preprocessing",
            patient_id=patient_id,
            column=column,
        )
    if not allow_constant and low == high:
        raise CohortError(
            f"the image is constant (every voxel is {float(low):g}): it holds no anatomy to preprocess",
            patient_id=patient_id,
            column=column,
        )
    return image


def _nifti_non_finite(path, patient_id, column):
    """Refuse a floating-point NIfTI file holding NaN or infinite values.

    ITK 5's NIfTI reader replaces them with 0 as it reads (InsightSoftwareConsortium/ITK#6683,
    fixed in ITK 6), so the image SimpleITK returns cannot show them: nibabel reads the values as
    stored. Integer files cannot hold them and are not read again.
    """
    name = path.name.lower()
    if path.is_dir() or not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return
    import nibabel

    try:
        nifti = nibabel.load(str(path))
    except Exception:  # noqa: BLE001 - SimpleITK read it: leave the format's details to it
        return
    if not np.issubdtype(nifti.header.get_data_dtype(), np.floating):
        return
    stored = np.asarray(nifti.dataobj.get_unscaled())
    finite = np.isfinite(stored)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(stored)))
        n_inf = int(finite.size - np.count_nonzero(finite)) - n_nan
        first = np.unravel_index(int(np.argmin(finite)), stored.shape)[:3]
        raise CohortError(
            f"the NIfTI file {str(path)!r} stores {n_nan} NaN and {n_inf} infinite voxels (of "
            f"{stored.size}; the first at voxel index {tuple(int(i) for i in first)}), which ITK "
            "reads as 0: fix or mask them in the image file before preprocessing",
            patient_id=patient_id,
            column=column,
        )


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
        info = _dicom_series(path, patient_id, column)[1]
        return _geometry_of_header(info, patient_id, column)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read image {str(path)!r}: {sitk_reason(exc)}",
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
    return _geometry_of_header(info, patient_id, column)


def _geometry_of_header(info, patient_id, column):
    """`info` if it describes a 3D scalar volume, else the error :func:`read_image` would give."""
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


def check_geometry(image, mask, *, tolerance=GEOMETRY_TOLERANCE):
    """Describe how a mask's geometry differs from its image's, or return ``None`` when they match.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The two images to compare.
    tolerance : float, default=GEOMETRY_TOLERANCE
        Allowed difference of spacing and origin, as a fraction of the image's smallest voxel
        spacing, and of each direction cosine (absolute). Sizes must be equal. The default,
        :data:`GEOMETRY_TOLERANCE` (1e-3), is the one every step applies.

    Returns
    -------
    difference : str or None
        ``None`` when the geometries agree, else a sentence giving both values of the first attribute
        that differs, by how much, and the tolerance.

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
    'spacing differs: image (1, 1, 1), mask (1, 1, 3) (by 2 mm; tolerated: 0.001 mm, 0.001 of the smallest voxel spacing)'
    """
    return _geometry_difference(_geometry(image), _geometry(mask), tolerance)


def _fmt(values):
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _geometry_difference(a, b, tolerance):
    """The rule of :data:`GEOMETRY_TOLERANCE`, in one place: `a` is the image, `b` the mask."""
    if a.size != b.size:
        return f"size differs: image {_fmt(a.size)}, mask {_fmt(b.size)}"
    scale = tolerance * min(a.spacing)
    tolerated = f"tolerated: {scale:.3g} mm, {tolerance:g} of the smallest voxel spacing"
    for name in ("spacing", "origin"):
        by = float(np.max(np.abs(np.subtract(getattr(a, name), getattr(b, name)))))
        if by > scale:
            return (
                f"{name} differs: image {_fmt(getattr(a, name))}, mask {_fmt(getattr(b, name))} "
                f"(by {by:.3g} mm; {tolerated})"
            )
    by = float(np.max(np.abs(np.subtract(a.direction, b.direction))))
    if by > tolerance:
        return (
            f"direction differs: image {_fmt(a.direction)}, mask {_fmt(b.direction)} "
            f"(a cosine by {by:.3g}; tolerated: {tolerance:g})"
        )
    return None


def load_case(X, patient_id, phases=DEFAULT_PHASES, *, geometry_tolerance=GEOMETRY_TOLERANCE):
    """Read and check the images and masks of one patient.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    patient_id : object
        Index value of the row to read.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases to read.
    geometry_tolerance : float, default=GEOMETRY_TOLERANCE
        See :func:`check_geometry`.

    Returns
    -------
    case : dict
        ``{phase: (image, mask)}``, the image as read (see :func:`read_image`) and the mask as a
        binary ``sitkUInt8`` image (see :func:`read_mask`) carrying its image's geometry exactly:
        once the two agree within `geometry_tolerance`, the mask is taken to lie on the image's
        grid, so that no later step (SimpleITK's filters, PyRadiomics) applies a tolerance of its
        own and every step accepts the same pairs.

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
    >>> shifted = sitk.Image(mask)
    >>> shifted.SetOrigin((1e-5, 0.0, 0.0))  # float rounding of another writer: within the tolerance
    >>> load_case(X.assign(mask=[shifted]), "P1", phases=("ap",))["ap"][1].GetOrigin()
    (0.0, 0.0, 0.0)
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
        mask.CopyInformation(image)  # a new image (read_mask's): the input is untouched
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
    phases = _check_phases(phases)
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

    Checks, in order: the phases and their columns exist; patient ids are unique; each required
    clinical column exists and holds no missing value; `y` is binary, aligned, and its positive
    class known (see :func:`binary_labels`); then, patient by patient, every image file exists and
    opens as a 3D scalar volume (a DICOM folder: one series of evenly spaced slices, see
    :func:`read_image`), every mask is non-empty and holds one label, and each mask shares its
    image's geometry (size, spacing, origin, direction within `geometry_tolerance`). Images,
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
    for patient_id, row in zip(X.index, X.itertuples(index=False), strict=True):
        cells = dict(zip(X.columns, row, strict=True))
        masks = {}  # a shared "mask" column is read once per patient
        for _, image_col, mask_col in columns:
            if check_voxels:
                image = read_image(cells[image_col], patient_id=patient_id, column=image_col)
                check_voxel_values(image, patient_id=patient_id, column=image_col)
                image_info = _geometry(image)
            else:
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
