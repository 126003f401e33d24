"""One cell of a cohort table read as an image or a mask, and one patient's case: every step
reads its images through :func:`read_image`, :func:`read_mask` or :func:`load_case`."""

import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .._settings import DEFAULT_PHASES, GEOMETRY_TOLERANCE, SLICE_SPACING_TOLERANCE
from ..exceptions import CohortError
from ..utils._sitk import sitk_reason
from ._dicom import dicom_series
from ._geometry import (
    check_volume,
    geometry,
    header_geometry,
    read_header,
    require_same_geometry,
)
from ._phases import phase_columns
from ._voxels import nifti_non_finite

__all__ = [
    "geometry_of_cell",
    "is_missing",
    "load_case",
    "mask_array_check",
    "read_image",
    "read_mask",
]


def is_missing(cell):
    """Whether a table cell holds nothing: ``None``, NaN, or a blank string."""
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def _check_path(cell, patient_id, column):
    if is_missing(cell):
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
    """`image` if it is a 3D scalar volume, else the error naming `patient_id` and `column`."""
    check_volume(geometry(image), patient_id, column)
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
            reader.SetFileNames(dicom_series(path, patient_id, column)[0])
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
        nifti_non_finite(path, patient_id, column)
    return _check_image_kind(image, patient_id, column)


def mask_array_check(array, patient_id, column):
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
    mask_array_check(sitk.GetArrayViewFromImage(image), patient_id, column)
    return sitk.Cast(image != 0, sitk.sitkUInt8)


def geometry_of_cell(cell, patient_id, column):
    """Geometry of an image cell, reading only the header of a file where possible."""
    if isinstance(cell, sitk.Image):
        return geometry(_check_image_kind(cell, patient_id, column))
    path = _check_path(cell, patient_id, column)
    if path.is_dir():
        info = dicom_series(path, patient_id, column)[1]
        return check_volume(info, patient_id, column)
    reader = read_header(path, patient_id, column)
    return check_volume(header_geometry(reader), patient_id, column)


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
        require_same_geometry(
            geometry(image),
            geometry(mask),
            geometry_tolerance,
            patient_id=patient_id,
            image_column=image_col,
            mask_column=mask_col,
        )
        mask.CopyInformation(image)  # a new image (read_mask's): the input is untouched
        case[phase] = (image, mask)
    return case
