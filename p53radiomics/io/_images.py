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
from ._rtstruct import read_rtstruct
from ._seg import frame_of_reference_uid, read_seg, with_frame_of_reference
from ._selectors import SERIES_KEYS, parse_cell
from ._voxels import nifti_non_finite

__all__ = [
    "check_label",
    "geometry_of_cell",
    "is_missing",
    "load_case",
    "mask_array_check",
    "mask_on_grid",
    "read_image",
    "read_mask",
]

#: The SOP classes of the two mask objects read here (PS3.4 B.5), beside their Modality.
_MASK_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
}
#: The selector key of each mask object, and the object each key is for.
_MASK_KEYS = {"SEG": "segment", "RTSTRUCT": "roi"}


def is_missing(cell):
    """Whether a table cell holds nothing: ``None``, NaN, or a blank string."""
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def _parse(cell, patient_id, column):
    """`cell` as ``(path, selector)``, the selector a ``(key, value)`` pair or None."""
    try:
        path, key, value = parse_cell(cell)
    except ValueError as exc:
        raise CohortError(str(exc), patient_id=patient_id, column=column) from None
    return path, (None if key is None else (key, value))


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


def _mask_object(path):
    """``"SEG"`` or ``"RTSTRUCT"`` where `path` is a DICOM file holding one, else None.

    Only a file named ``*.dcm`` or with the DICOM preamble (``DICM`` at byte 128) is opened, with
    pydicom (imported here), reading two tags; an RTSTRUCT often lacks the preamble.
    """
    if path.is_dir():
        return None
    with open(path, "rb") as f:
        dicm = f.read(132)[128:] == b"DICM"
    if not dicm and path.suffix.lower() != ".dcm":
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, force=True, specific_tags=["Modality", "SOPClassUID"]
        )
    except Exception:  # noqa: BLE001 - not DICOM after all: left to SimpleITK to say so
        return None
    modality = str(ds.get("Modality", "")).upper()
    kind = _MASK_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    return kind or (modality if modality in _MASK_KEYS else None)


def _refuse_selector(selector, path, kind, patient_id, column):
    """Raise if `selector` does not apply to the `kind` of cell at `path` (None: any image)."""
    if selector is None:
        return
    key = selector[0]
    allowed = {"SEG": ("segment",), "RTSTRUCT": ("roi",), "folder": SERIES_KEYS}.get(kind, ())
    if key not in allowed:
        what = {"SEG": "a DICOM SEG", "RTSTRUCT": "an RTSTRUCT", "folder": "a DICOM folder"}
        raise CohortError(
            f"the selector '#{key}=' does not apply to {str(path)!r}, "
            f"{what.get(kind, 'an image file')}: "
            + ("it takes no selector" if not allowed else f"it takes '#{allowed[0]}='"),
            patient_id=patient_id,
            column=column,
        )


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
    cell, selector = _parse(cell, patient_id, column)
    path = _check_path(cell, patient_id, column)
    kind = _mask_object(path)
    if kind is not None:
        raise CohortError(
            f"{str(path)!r} is a DICOM {kind}, a mask: it belongs in a mask column",
            patient_id=patient_id,
            column=column,
        )
    _refuse_selector(selector, path, "folder" if path.is_dir() else None, patient_id, column)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(dicom_series(path, patient_id, column, selector)[0])
            # the slices are checked to lie within this fraction of the spacing of an even grid:
            # ITK need not warn of smaller deviations (its default warns from 1e-4)
            reader.SetSpacingWarningRelThreshold(SLICE_SPACING_TOLERANCE)
            image = with_frame_of_reference(reader.Execute(), reader.GetFileNames()[0])
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


def check_label(label, phases):
    """``label=`` of a step checked: ``None`` (one label per mask), or ``{phase: int}``.

    `label` is ``None``, an int (that label in every phase's mask) or a dict phase -> int (a key
    for every phase, no other); a label is a positive integer. A ValueError or TypeError otherwise.

    Examples
    --------
    >>> from p53radiomics.io._images import check_label
    >>> check_label(2, ("ap", "pvp"))
    {'ap': 2, 'pvp': 2}
    >>> check_label({"ap": 2}, ("ap", "pvp"))
    Traceback (most recent call last):
    ...
    ValueError: label={'ap': 2}: a dict needs one label per phase (missing: ['pvp']; not a phase: [])
    """
    if label is None:
        return None
    if isinstance(label, dict):
        missing = [p for p in phases if p not in label]
        extra = [p for p in label if p not in phases]
        if missing or extra:
            raise ValueError(
                f"label={label!r}: a dict needs one label per phase (missing: {missing!r}; "
                f"not a phase: {extra!r})"
            )
    labels = (
        {p: label[p] for p in phases} if isinstance(label, dict) else dict.fromkeys(phases, label)
    )
    for phase, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise TypeError(
                f"label={label!r}: the label of phase {phase!r} must be a positive integer "
                f"(0 is the background), got {value!r}"
            )
    return {p: int(v) for p, v in labels.items()}


def _pick_label(image, label, patient_id, column):
    """The voxels of `label` in the label image `image`, as 0/1; a CohortError where it is absent."""
    array = sitk.GetArrayViewFromImage(image)
    if not np.any(array == label):
        labels = np.unique(array[array != 0])
        shown = ", ".join(f"{v:g}" for v in labels[:10]) + (", ..." if labels.size > 10 else "")
        # a 0/1 mask: most likely N4Resampler(label=...)'s output, which holds that label as 1
        hint = " (a 0/1 mask: label=None reads it)" if list(labels) == [1] else ""
        raise CohortError(
            f"label {label} is not in the mask; the labels it holds are: {shown or 'none'}{hint}",
            patient_id=patient_id,
            column=column,
        )
    return image == label


def read_mask(
    cell, *, patient_id=None, column=None, reference=None, segment=None, roi=None, label=None
):
    """Read one mask cell and check that it is a usable tumour ROI.

    Parameters
    ----------
    cell : str, os.PathLike or SimpleITK.Image
        As for :func:`read_image` (a label image, a DICOM folder), or a DICOM SEG file, or a
        DICOM RTSTRUCT file. A text cell may end in a selector (see Notes): ``seg.dcm#segment=2``,
        ``seg.dcm#segment=liver tumour``, ``rtstruct.dcm#roi=GTV``, ``folder#number=4``.
    patient_id : object, default=None
        Row of the cell, named in errors.
    column : str, default=None
        Column of the cell, named in errors.
    reference : SimpleITK.Image, default=None
        The image the mask belongs to: a SEG is placed on its grid and an RTSTRUCT rasterised onto
        it (an RTSTRUCT needs it). Other masks are read as they are (:func:`load_case` checks
        their geometry against the image's).
    segment : int or str, default=None
        The segment of a DICOM SEG, by SegmentNumber (an int) or SegmentLabel (a str), as the
        cell's ``#segment=`` does. ``None``: the cell's selector, else the SEG's only segment.
    roi : str, default=None
        The ROIName of an RTSTRUCT's ROI, as the cell's ``#roi=`` does. ``None``: the cell's
        selector, else the file's only ROI.
    label : int, default=None
        The label to keep, in a mask holding several (an ITK-SNAP or 3D Slicer label file): its
        voxels are the ROI, every other voxel is outside. ``None``: the mask must hold one label
        (any non-zero value), as before.

    Returns
    -------
    mask : SimpleITK.Image
        A ``sitkUInt8`` image, 1 inside the ROI and 0 outside, with the geometry of the input (of
        `reference` for a SEG or an RTSTRUCT read with one). A new image: the input is never
        modified.

    Raises
    ------
    CohortError
        As :func:`read_image`, and also if the mask is empty or holds several labels (without
        `label`), or does not hold `label` (the labels it holds are listed); for a SEG,
        an unknown segment (the segments are listed) or frames that do not lie on `reference`'s
        grid; for an RTSTRUCT, no `reference`, an unknown ROI (the ROI names are listed), a POINT
        ROI or open contours, or contours off the image's slice planes or field of view; a
        selector that does not fit the cell (``#roi=`` on a SEG...), or `segment`/`roi` given
        both as a parameter and in the cell; a SEG or RTSTRUCT whose FrameOfReferenceUID is not
        `reference`'s (when both have one: a DICOM series read by :func:`read_image` has its own).

    Notes
    -----
    The selector syntax is ``PATH#KEY=VALUE`` (one per cell; see :func:`parse_cell`): a ``#`` is
    a selector's only where ``series=``, ``description=``, ``number=``, ``segment=`` or ``roi=``
    follows it, so other paths holding ``#`` are read as they are.

    A DICOM SEG is read with highdicom: its frames are placed by their plane positions
    (ImagePositionPatient of each frame), never by frame order; frames the SEG omits (empty ones)
    are 0; a segment is read alone, so overlapping segments are each whole. A FRACTIONAL segment
    is inside where its fraction is at least :data:`SEG_FRACTION_THRESHOLD` (0.5). On
    `reference`, every frame must lie on the image's voxels (the same pixel spacing, voxel centres
    within :data:`GEOMETRY_TOLERANCE` of the image's, inside the image).

    An RTSTRUCT's contours must lie on the image's slice planes (within
    :data:`SLICE_SPACING_TOLERANCE` of the slice spacing). A voxel is inside where its centre is
    inside an odd number of the ROI's contours on its slice (even-odd: a contour within another
    is a hole); no partial voxels.

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
    image = mask_on_grid(cell, reference, patient_id, column, segment=segment, roi=roi)
    if label is not None:
        image = _pick_label(image, label, patient_id, column)
    mask_array_check(sitk.GetArrayViewFromImage(image), patient_id, column)
    return sitk.Cast(image != 0, sitk.sitkUInt8)


def mask_on_grid(cell, grid, patient_id, column, *, segment=None, roi=None):
    """A mask cell read as a label image, unchecked: a SEG or RTSTRUCT on the
    :class:`GeometryInfo` `grid` (may be ``None`` for a SEG), any other as :func:`read_image` reads it.
    `grid` may be an image: a SEG or RTSTRUCT must then share its FrameOfReferenceUID, if it has one.
    """
    uid = frame_of_reference_uid(grid)  # of an image; None for a GeometryInfo
    if isinstance(grid, sitk.Image):
        grid = geometry(grid)
    if isinstance(cell, sitk.Image):
        return read_image(cell, patient_id=patient_id, column=column)
    path, selector = _parse(cell, patient_id, column)
    path = _check_path(path, patient_id, column)
    kind = _mask_object(path)
    if kind is None:
        if segment is not None or roi is not None:
            raise CohortError(
                f"{'segment' if segment is not None else 'roi'}= was given but {str(path)!r} is "
                "not a DICOM SEG or RTSTRUCT",
                patient_id=patient_id,
                column=column,
            )
        return read_image(cell, patient_id=patient_id, column=column)
    _refuse_selector(selector, path, kind, patient_id, column)
    given = segment if kind == "SEG" else roi
    wrong = roi if kind == "SEG" else segment
    if wrong is not None:
        raise CohortError(
            f"{'roi' if kind == 'SEG' else 'segment'}= does not apply to {str(path)!r}, a DICOM "
            f"{kind}",
            patient_id=patient_id,
            column=column,
        )
    if given is not None and selector is not None and str(given) != selector[1]:
        raise CohortError(
            f"the cell selects {selector[0]} {selector[1]!r} and the {_MASK_KEYS[kind]}= "
            f"parameter {given!r}: give one",
            patient_id=patient_id,
            column=column,
        )
    chosen = given if given is not None else (None if selector is None else selector[1])
    read = read_seg if kind == "SEG" else read_rtstruct
    return read(path, chosen, grid, patient_id, column, frame_of_reference=uid)


def geometry_of_cell(cell, patient_id, column):
    """Geometry of an image cell, reading only the header of a file where possible."""
    if isinstance(cell, sitk.Image):
        return geometry(_check_image_kind(cell, patient_id, column))
    text, selector = _parse(cell, patient_id, column)
    path = _check_path(text, patient_id, column)
    if path.is_dir():
        _refuse_selector(selector, path, "folder", patient_id, column)
        info = dicom_series(path, patient_id, column, selector)[1]
        return check_volume(info, patient_id, column)
    if selector is not None or _mask_object(path) is not None:
        return geometry(read_image(cell, patient_id=patient_id, column=column))  # its error
    reader = read_header(path, patient_id, column)
    return check_volume(header_geometry(reader), patient_id, column)


def load_case(
    X, patient_id, phases=DEFAULT_PHASES, *, geometry_tolerance=GEOMETRY_TOLERANCE, label=None
):
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
    label : int, dict or None, default=None
        The label of a multi-label mask to read as the ROI: one for every phase, or a dict phase
        -> label (see :func:`read_mask`). ``None``: each mask holds one label.

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
    labels = check_label(label, [c.phase for c in columns]) or {}
    row = X.loc[patient_id]
    case = {}
    for phase, image_col, mask_col in columns:
        image = read_image(row[image_col], patient_id=patient_id, column=image_col)
        cell, label = row[mask_col], labels.get(phase)
        mask = read_mask(cell, patient_id=patient_id, column=mask_col, reference=image, label=label)
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
