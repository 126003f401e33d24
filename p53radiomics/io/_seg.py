"""A DICOM SEG file read as one segment's mask, placed on its image's grid by the frames' plane
positions (highdicom's :meth:`~highdicom.seg.Segmentation.get_volume`), never by frame order.

highdicom (with pydicom) is imported here, inside the functions, so that ``import p53radiomics.io``
stays cheap: it is the maintained reader of the SEG object (segment descriptions, BINARY,
FRACTIONAL and LABELMAP types, frames omitted where empty, the per-frame functional groups).
"""

import numpy as np
import SimpleITK as sitk

from .._settings import GEOMETRY_TOLERANCE
from ..exceptions import CohortError
from ._geometry import GeometryInfo, fmt

__all__ = [
    "FRAME_OF_REFERENCE_TAG",
    "SEG_FRACTION_THRESHOLD",
    "check_frame_of_reference",
    "frame_of_reference_uid",
    "place_on_grid",
    "read_seg",
    "with_frame_of_reference",
]

#: A voxel of a FRACTIONAL segment is inside the mask where its fraction (the stored value over
#: MaximumFractionalValue, 0 to 1) is at least this: the voxel is more inside than outside.
SEG_FRACTION_THRESHOLD = 0.5

#: SimpleITK's metadata key of the DICOM FrameOfReferenceUID (0020,0052): where an image read
#: from DICOM carries the frame of reference its masks must share.
FRAME_OF_REFERENCE_TAG = "0020|0052"


def frame_of_reference_uid(image):
    """The FrameOfReferenceUID in `image`'s metadata (:data:`FRAME_OF_REFERENCE_TAG`), or None
    (also for anything but a :class:`SimpleITK.Image`, e.g. a :class:`GeometryInfo`)."""
    if not isinstance(image, sitk.Image) or not image.HasMetaDataKey(FRAME_OF_REFERENCE_TAG):
        return None
    return image.GetMetaData(FRAME_OF_REFERENCE_TAG).strip().rstrip("\x00").strip() or None


def with_frame_of_reference(image, dicom_file):
    """`image`, read from the DICOM series of `dicom_file`, given that file's FrameOfReferenceUID
    in its metadata (SimpleITK's series reader keeps none), so its masks can be checked against it.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(dicom_file))
    reader.ReadImageInformation()
    if reader.HasMetaDataKey(FRAME_OF_REFERENCE_TAG):
        image.SetMetaData(FRAME_OF_REFERENCE_TAG, reader.GetMetaData(FRAME_OF_REFERENCE_TAG))
    return image


def check_frame_of_reference(uid, image_uid, what, where):
    """Refuse `what` (a DICOM SEG or RTSTRUCT) whose FrameOfReferenceUID `uid` is not its image's.

    Either UID missing (a NIfTI image, an image made in memory, an object without one): nothing
    to compare, so nothing refused. Different UIDs mean the mask was drawn on another patient
    space (another examination, or another patient): its positions would place it on the wrong
    anatomy, so it is refused rather than placed.
    """
    uid = None if uid is None else str(uid).strip()
    if uid and image_uid and uid != image_uid:
        raise CohortError(
            f"{what} is drawn on the frame of reference {uid}, its image on {image_uid} "
            "(FrameOfReferenceUID): it belongs to another scan's patient space and would be "
            "placed on the wrong anatomy",
            **where,
        )


def read_seg(path, segment, grid, patient_id, column, *, frame_of_reference=None):
    """One segment of the DICOM SEG file `path` as a ``sitkUInt8`` 0/1 mask.

    `segment` is ``None`` (the SEG must hold one segment), a SegmentNumber (an int, or a text of
    digits) or a SegmentLabel. `grid` is the :class:`GeometryInfo` of the image the mask is for, or
    ``None``: the mask then keeps the grid its frames span. `frame_of_reference` is the image's
    FrameOfReferenceUID, if known (:func:`frame_of_reference_uid`). Refuses, naming `patient_id`
    and `column`, an unreadable SEG, a SEG on another frame of reference than the image's
    (:func:`check_frame_of_reference`), an unknown segment (the segments are listed), frames that
    are not one volume, and frames that do not lie on `grid`'s voxels.
    """
    import highdicom

    where = {"patient_id": patient_id, "column": column}
    try:
        seg = highdicom.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom and highdicom raise many kinds
        raise CohortError(f"cannot read DICOM SEG {str(path)!r}: {exc}", **where) from exc
    uid = seg.get("FrameOfReferenceUID")
    check_frame_of_reference(uid, frame_of_reference, f"DICOM SEG {str(path)!r}", where)
    number = _segment_number(seg, segment, path, where)
    what = f"the frames of DICOM SEG {str(path)!r} (segment {number})"
    if grid is not None:
        array = np.zeros(tuple(grid.size)[::-1], dtype=np.uint8)
        for frame, frame_grid in _segment_frames(seg, number, grid, path, where):
            place_on_grid(frame[None], frame_grid, grid, what, where, out=array)
        return _image(array, grid)
    try:
        volume = seg.get_volume(segment_numbers=[number], combine_segments=False)
    except Exception as exc:  # noqa: BLE001 - highdicom's reasons are ValueError, RuntimeError...
        raise CohortError(
            f"{what} do not make one regular volume, so it has no grid of its own: read it onto "
            f"its image's (reference=, or through a cohort table): {exc}",
            **where,
        ) from exc
    affine = np.asarray(volume.affine, dtype=float)
    axes = affine[:3, [2, 1, 0]]  # highdicom indexes (slice, row, column); SimpleITK the reverse
    spacing = np.linalg.norm(axes, axis=0)
    inside = _inside(np.asarray(volume.array)[..., 0], seg, number)
    own = GeometryInfo(
        inside.shape[::-1], tuple(spacing), tuple(affine[:3, 3]), tuple((axes / spacing).ravel()), 1
    )
    return _image(inside.astype(np.uint8), own)


def _image(array, grid):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _inside(values, seg, number, stored=False):
    """Which pixels of one segment's `values` are inside: non-zero (BINARY), a fraction of at least
    :data:`SEG_FRACTION_THRESHOLD` (FRACTIONAL; `stored` values are out of
    MaximumFractionalValue), `number` (a LABELMAP's stored values)."""
    kind = str(seg.SegmentationType)
    if kind == "FRACTIONAL":
        top = float(seg.MaximumFractionalValue) if stored else 1.0
        return values >= SEG_FRACTION_THRESHOLD * top
    if kind == "LABELMAP" and stored:
        return values == number
    return values != 0


def _functional(seg, i, sequence):
    """Item `sequence` of frame `i`'s functional groups: per-frame, else shared."""
    for groups in (seg.PerFrameFunctionalGroupsSequence[i], seg.SharedFunctionalGroupsSequence[0]):
        if sequence in groups:
            return groups[sequence].value[0]
    return None


def _segment_frames(seg, number, grid, path, where):
    """Each frame of segment `number`: its inside pixels (rows, columns) and its geometry, from
    its own plane position, orientation and pixel spacing (a one-slice :class:`GeometryInfo`)."""
    if seg.is_tiled:
        raise CohortError(f"DICOM SEG {str(path)!r} is tiled (a slide's): not a volume", **where)
    labelmap = str(seg.SegmentationType) == "LABELMAP"
    for i in range(int(seg.NumberOfFrames)):
        if not labelmap:
            ident = _functional(seg, i, "SegmentIdentificationSequence")
            if ident is None or int(ident.ReferencedSegmentNumber) != number:
                continue
        position = _functional(seg, i, "PlanePositionSequence")
        orientation = _functional(seg, i, "PlaneOrientationSequence")
        measures = _functional(seg, i, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise CohortError(
                f"frame {i + 1} of DICOM SEG {str(path)!r} has no plane position, orientation or "
                "pixel spacing: it cannot be placed on an image",
                **where,
            )
        row, col = np.reshape(np.asarray(orientation.ImageOrientationPatient, float), (2, 3))
        normal = np.cross(row, col)
        # the frame's slice axis is given the spacing of the image's axis along its normal
        axis = int(np.argmax(np.abs(np.reshape(grid.direction, (3, 3)).T @ normal)))
        dy, dx = (float(v) for v in measures.PixelSpacing)  # DICOM: row spacing first
        frame_grid = GeometryInfo(
            (int(seg.Columns), int(seg.Rows), 1),
            (dx, dy, float(grid.spacing[axis])),
            tuple(float(v) for v in position.ImagePositionPatient),
            tuple(np.column_stack([row, col, normal]).ravel()),
            1,
        )
        values = np.asarray(seg.get_stored_frame(i + 1))
        yield _inside(values, seg, number, stored=True).astype(np.uint8), frame_grid


def _segment_number(seg, segment, path, where):
    """The SegmentNumber `segment` names (a number or a label), or the SEG's only segment."""
    numbers = list(seg.segment_numbers)
    labels = {n: str(seg.get_segment_description(n).segment_label) for n in numbers}
    listed = ", ".join(f"{n} ({labels[n]!r})" for n in numbers)
    if segment is None:
        if len(numbers) == 1:
            return numbers[0]
        raise CohortError(
            f"DICOM SEG {str(path)!r} holds {len(numbers)} segments: {listed}; choose one by "
            "appending '#segment=NUMBER' or '#segment=LABEL' to the cell",
            **where,
        )
    if isinstance(segment, int | np.integer) or str(segment).strip().isdigit():
        if int(segment) in numbers:
            return int(segment)
        said = f"no segment number {int(segment)}"
    else:
        text = str(segment).strip()
        exact = [n for n in numbers if labels[n] == text]
        folded = [n for n in numbers if labels[n].casefold() == text.casefold()]
        found = exact or folded
        if len(found) == 1:
            return found[0]
        said = f"{len(found)} segments labelled {text!r}" if found else f"no segment {text!r}"
    raise CohortError(f"DICOM SEG {str(path)!r} has {said}; its segments: {listed}", **where)


def place_on_grid(array, source, grid, what, where, out=None):
    """`array` (z, y, x) on the :class:`GeometryInfo` `source`, copied onto the voxels of `grid`:
    into a new array, or OR-ed into `out` (a (z, y, x) array on `grid`), which is returned.

    The two grids must share their voxels: the same spacing along each axis, up to a swap or a
    flip of axes, and every voxel centre of `source` within :data:`GEOMETRY_TOLERANCE` (of
    `grid`'s smallest spacing) of a voxel centre of `grid`, all of them inside `grid`. Otherwise
    the error says how `what` misses the grid. Voxels of `grid` that `source` does not cover are 0.
    """
    src = np.reshape(source.direction, (3, 3)) * np.asarray(source.spacing)
    ref = np.reshape(grid.direction, (3, 3)) * np.asarray(grid.spacing)
    to_ref = np.linalg.solve(ref, src)  # source index -> grid index (SimpleITK's (x, y, z))
    shift = np.linalg.solve(ref, np.subtract(source.origin, grid.origin))
    rounded = np.round(to_ref)
    perm = np.abs(rounded)
    if not (np.all(perm.sum(axis=0) == 1) and np.all(perm.sum(axis=1) == 1)):
        raise CohortError(
            f"{what} do not lie on the image's grid: their voxels (spacing "
            f"{fmt(source.spacing)}, direction {fmt(source.direction)}) are not the image's "
            f"(spacing {fmt(grid.spacing)}, direction {fmt(grid.direction)})",
            **where,
        )
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in source.size], indexing="ij"))
    corners = corners.reshape(3, -1)
    exact = to_ref @ corners + shift[:, None]
    nearest = rounded @ corners + np.round(shift)[:, None]
    off = float(np.max(np.abs(exact - nearest) * np.asarray(grid.spacing)[:, None]))
    tolerated = GEOMETRY_TOLERANCE * min(grid.spacing)
    if off > tolerated:
        raise CohortError(
            f"{what} do not lie on the image's grid: a voxel centre lies {off:.3g} mm from the "
            f"nearest voxel centre of the image (tolerated: {tolerated:.3g} mm; origin "
            f"{fmt(source.origin)} against the image's {fmt(grid.origin)})",
            **where,
        )
    low, high = nearest.min(axis=1).astype(int), nearest.max(axis=1).astype(int)
    if np.any(low < 0) or np.any(high >= np.asarray(grid.size)):
        raise CohortError(
            f"{what} do not fit the image's grid: they cover the voxel indices {fmt(low)} to "
            f"{fmt(high)} of an image of size {fmt(grid.size)} (a SEG of another image, or of a "
            "larger part of the series than the image holds)",
            **where,
        )
    xyz = array.transpose(2, 1, 0)
    order = [int(np.flatnonzero(rounded[b])[0]) for b in range(3)]  # source axis of each grid axis
    xyz = xyz.transpose(order)
    flips = tuple(b for b in range(3) if rounded[b, order[b]] < 0)
    xyz = np.flip(xyz, axis=flips) if flips else xyz
    if out is None:
        out = np.zeros(tuple(grid.size)[::-1], dtype=array.dtype)
    block = out.transpose(2, 1, 0)[
        tuple(slice(lo, hi + 1) for lo, hi in zip(low, high, strict=True))
    ]
    block |= xyz
    return out
