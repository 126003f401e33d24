"""A folder holding one DICOM series: its files in slice order and the volume's geometry, from the
headers only, with the checks that the slices make one evenly spaced volume
(:data:`SLICE_SPACING_TOLERANCE`)."""

import fnmatch
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .._settings import GEOMETRY_TOLERANCE, SLICE_SPACING_TOLERANCE
from ..exceptions import CohortError
from ..utils._sitk import sitk_reason
from ._geometry import GeometryInfo, fmt, header_geometry, read_header
from ._selectors import SERIES_KEYS, selector_hint

__all__ = ["NON_IMAGE_MODALITIES", "dicom_series"]

#: Modalities of DICOM objects that are no image series (segmentations, structure sets, reports,
#: presentation states, key objects): a folder's image series are chosen among the others, so the
#: SEG or RTSTRUCT exported beside a series does not make its folder ambiguous.
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "SR", "PR", "KO"})


def _mm(value):
    return f"{value:.4g}"


def _name(files, i):
    """The name of file `i`, for the messages."""
    return repr(Path(files[i]).name)


def _dicom_header(file, patient_id, column):
    """The header of one DICOM file, read without its pixels."""
    # GDCM listed it as DICOM: no probing of every format
    return read_header(file, patient_id, column, what="DICOM file", image_io="GDCMImageIO")


def _dicom_numbers(reader, tag, count):
    """A multi-valued DICOM decimal-string tag as floats, or None if absent or malformed."""
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        values = np.array([float(v) for v in reader.GetMetaData(tag).strip().split("\\")])
    except ValueError:
        return None
    return values if values.size == count and np.all(np.isfinite(values)) else None


def _series_header(folder, uid, patient_id, column):
    """The files of series `uid` in `folder` and the header of its first file."""
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
    return files, _dicom_header(files[0], patient_id, column)


def _tag(header, tag):
    return header.GetMetaData(tag).strip() if header.HasMetaDataKey(tag) else ""


def _describe_series(uid, files, header):
    description = _tag(header, "0008|103e")
    shown = repr(description) if description else "no SeriesDescription"
    return f"{uid} ({shown}, {len(files)} {'slice' if len(files) == 1 else 'slices'})"


def _matches(uid, header, key, value):
    """Whether series `uid`, whose first header is `header`, is the one selector `key=value` names."""
    if key == "series":
        return uid == value
    if key == "number":
        number = _tag(header, "0020|0011")
        return bool(re.fullmatch(r"[+-]?\d+", number)) and int(number) == int(value)
    return fnmatch.fnmatchcase(_tag(header, "0008|103e").casefold(), value.casefold())


def dicom_series(folder, patient_id, column, selector=None):
    """The files of the one DICOM series in `folder`, in slice order, and the volume's geometry.

    `selector` is ``None`` (the folder must hold one series) or a ``(key, value)`` pair choosing
    one series of the folder (see :mod:`._selectors`: ``series``, ``description`` or ``number``).

    Reads the headers only. A series whose slices are not evenly spaced along their normal
    (ImagePositionPatient projected on the normal of ImageOrientationPatient), not stacked along
    that normal, of different orientations or sizes, or with two slices at one position, cannot be
    one volume: ITK would read it with a made-up slice spacing, so it is refused here, with the
    gap named. Used by :func:`read_image` and by :func:`validate_cohort`, so both apply the same
    rule (:data:`SLICE_SPACING_TOLERANCE`).
    """
    folder = str(folder)
    where = {"patient_id": patient_id, "column": column}
    files = _series_files(folder, where, selector)
    headers = [_dicom_header(f, **where) for f in files]
    first = headers[0]
    if len(files) == 1:
        return list(files), header_geometry(first)
    positions, normal, pixel = _slice_planes(files, headers, folder, where)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    files = [files[i] for i in order]  # in slice order from here on, and so the messages
    headers = [headers[i] for i in order]
    positions, along = positions[order], along[order]
    n = len(files)
    gaps = np.diff(along)
    typical = float(np.median(gaps))
    _check_stacked(files, positions, normal, pixel, along, gaps, typical, folder, where)
    spacing = float(np.linalg.norm(positions[-1] - positions[0]) / (n - 1))
    _check_evenly_spaced(files, along, gaps, typical, folder, where)
    return files, GeometryInfo(
        (*first.GetSize()[:2], n),
        (*headers[0].GetSpacing()[:2], spacing),
        tuple(headers[0].GetOrigin()),
        tuple(headers[0].GetDirection()),
        first.GetNumberOfComponents(),
    )


def _series_files(folder, where, selector=None):
    """The files of the one series in `folder` (or the one `selector` names), as GDCM lists them;
    refuses none, several, or a selector that names none."""
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
        series = [(uid, *_series_header(folder, uid, **where)) for uid in ids]
        series = [s for s in series if _tag(s[2], "0008|0060").upper() not in NON_IMAGE_MODALITIES]
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read the DICOM files of {folder!r}: {sitk_reason(exc)}", **where
        ) from exc
    if not series or not series[0][1]:
        raise CohortError(f"folder {folder!r} holds no DICOM series", **where)
    described = "; ".join(_describe_series(*s) for s in series)
    numbers = ", ".join(_tag(h, "0020|0011") or "none" for _, _, h in series)
    numbers = f"SeriesNumbers, in that order: {numbers}"
    if selector is not None:
        key, value = selector
        chosen = [s for s in series if _matches(s[0], s[2], key, value)]
        if len(chosen) != 1:
            said = "none of" if not chosen else f"{len(chosen)} of"
            raise CohortError(
                f"the selector '#{key}={value}' matches {said} the {len(series)} DICOM "
                f"series of {folder!r}: {described} ({numbers})",
                **where,
            )
        return chosen[0][1]
    if len(series) > 1:
        raise CohortError(
            f"folder {folder!r} holds {len(series)} DICOM series: {described}; give the folder of "
            f"a single series, or {selector_hint(SERIES_KEYS)} ({numbers})",
            **where,
        )
    return series[0][1]


def _slice_planes(files, headers, folder, where):
    """Each slice's position, the unit slice normal and each slice's pixel spacing, in file order.

    Refuses slices without a valid position or orientation, of another size, of another
    orientation or pixel spacing than the first, or whose orientation gives no normal.
    """
    first = headers[0]
    positions, orientations = [], []
    for i, header in enumerate(headers):
        position = _dicom_numbers(header, "0020|0032", 3)
        orientation = _dicom_numbers(header, "0020|0037", 6)
        if position is None or orientation is None:
            missing = "ImagePositionPatient (0020,0032)" if position is None else ""
            missing += " and " if position is None and orientation is None else ""
            missing += "ImageOrientationPatient (0020,0037)" if orientation is None else ""
            raise CohortError(
                f"DICOM file {_name(files, i)} of {folder!r} has no valid {missing}: the positions "
                f"of the {len(files)} slices, and so the volume's geometry, are unknown",
                **where,
            )
        if tuple(header.GetSize()[:2]) != tuple(first.GetSize()[:2]) or header.GetSize()[2] != 1:
            raise CohortError(
                f"DICOM files {_name(files, 0)} and {_name(files, i)} of {folder!r} have different "
                f"sizes ({fmt(first.GetSize())} and {fmt(header.GetSize())}): not one volume",
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
            f"DICOM files {_name(files, 0)} and {_name(files, odd[0])} of {folder!r} differ in "
            "orientation or pixel spacing (ImageOrientationPatient, PixelSpacing): the folder "
            "mixes acquisitions",
            **where,
        )
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    if not np.linalg.norm(normal) > 0.5:  # two unit vectors at right angles give 1
        raise CohortError(
            f"DICOM file {_name(files, 0)} of {folder!r}: its ImageOrientationPatient "
            f"{fmt(orientations[0])} is not two orthogonal unit vectors, so the slice normal and "
            "the volume's geometry are unknown",
            **where,
        )
    normal /= np.linalg.norm(normal)
    return positions, normal, pixel


def _check_stacked(files, positions, normal, pixel, along, gaps, typical, folder, where):
    """Refuse two slices at one position, or slices shifted within the slice plane (a shear).

    `files`, `positions`, `along` (the positions along the `normal`) and their `gaps` are in slice
    order; `pixel` is the pixel spacing of each slice, in file order.
    """
    n = len(files)
    same = np.flatnonzero(gaps <= SLICE_SPACING_TOLERANCE * typical)
    if same.size:
        i = int(same[0])
        raise CohortError(
            f"DICOM slices {i + 1} and {i + 2} of {n} in {folder!r} (files {_name(files, i)} and "
            f"{_name(files, i + 1)}) lie at the same position along the slice normal "
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
            f"(file {_name(files, i)}) is shifted by {_mm(shear[i])} mm within the slice plane "
            "from slice 1 (a tilted CT gantry or a sheared stack), which a volume cannot "
            "represent; resample the series onto a regular grid first",
            **where,
        )


def _check_evenly_spaced(files, along, gaps, typical, folder, where):
    """Refuse slices (in slice order) off an even grid by more than SLICE_SPACING_TOLERANCE."""
    n = len(files)
    step = (along[-1] - along[0]) / (n - 1)
    deviation = np.abs(along - (along[0] + step * np.arange(n)))
    if not deviation.max() > SLICE_SPACING_TOLERANCE * step:
        return
    uneven = np.flatnonzero(np.abs(gaps - typical) > SLICE_SPACING_TOLERANCE * typical)
    if uneven.size and uneven.size < gaps.size:
        said = ", ".join(
            f"slices {i + 1} and {i + 2} (files {_name(files, i)} and {_name(files, i + 1)}) are "
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
