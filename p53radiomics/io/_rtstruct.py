"""An ROI of a DICOM RTSTRUCT file rasterised onto its image's grid.

The rule, stated once (:func:`read_rtstruct`): a voxel is inside when its centre is inside the
ROI's contours on its slice by the even-odd rule: an odd number of that slice's contours around it
(so a contour inside another is a hole, and an island inside the hole is tissue again, as the
DICOM standard's "contours on one plane" are read by the common viewers). There are no partial
voxels: a voxel whose centre is outside is outside, however much of it a contour covers.

Written here with numpy rather than with a rasteriser: rt-utils brings OpenCV (hundreds of MB) for
a cv2.fillPoly whose pixel rule is OpenCV's own, scikit-image is not a dependency, and matplotlib's
``Path.contains_points`` documents no rule for points on an edge. The crossing test below is the
textbook one, with half-open edges, so a centre on an edge is decided the same way every time.
pydicom is imported inside the function, so that ``import p53radiomics.io`` stays cheap.
"""

import numpy as np
import SimpleITK as sitk

from .._settings import SLICE_SPACING_TOLERANCE
from ..exceptions import CohortError
from ._geometry import fmt
from ._seg import check_frame_of_reference

__all__ = ["even_odd_inside", "read_rtstruct"]


def read_rtstruct(path, roi, grid, patient_id, column, *, frame_of_reference=None):
    """ROI `roi` (an ROIName; ``None`` where the file holds one ROI) of the RTSTRUCT `path`,
    rasterised onto `grid` (a :class:`GeometryInfo`) as a ``sitkUInt8`` 0/1 mask.

    Refuses, naming `patient_id` and `column`: no `grid` (contours have no voxels of their own), an
    unreadable file, a missing ROI (the ROI names are listed), an ROI on another frame of
    reference than the image's FrameOfReferenceUID `frame_of_reference` (when both are known:
    :func:`~._seg.check_frame_of_reference`), a POINT ROI or open contours (no
    region), and contours off the image: not on one of its slice planes (within
    :data:`SLICE_SPACING_TOLERANCE` of the slice spacing) or outside its field of view.
    """
    where = {"patient_id": patient_id, "column": column}
    if grid is None:
        raise CohortError(
            f"RTSTRUCT {str(path)!r} holds contours, not voxels: it is read onto an image's grid "
            "(as a mask column of a cohort table, or read_mask(..., reference=image))",
            **where,
        )
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), force=True)
        names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        frames = {
            int(r.ROINumber): r.get("ReferencedFrameOfReferenceUID")
            for r in ds.StructureSetROISequence
        }
        listed = [f.FrameOfReferenceUID for f in ds.get("ReferencedFrameOfReferenceSequence", [])]
        contours_of = {
            int(c.ReferencedROINumber): list(getattr(c, "ContourSequence", []))
            for c in getattr(ds, "ROIContourSequence", [])
        }
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a damaged file
        raise CohortError(f"cannot read RTSTRUCT {str(path)!r}: {exc}", **where) from exc
    number = _roi_number(names, roi, path, where)
    name = names[number]
    # the ROI's own frame of reference; else the file's, where it lists one
    uid = frames[number] or (listed[0] if len(listed) == 1 else None)
    what = f"ROI {name!r} of RTSTRUCT {str(path)!r}"
    check_frame_of_reference(uid, frame_of_reference, what, where)
    contours = contours_of.get(number, [])
    if not contours:
        raise CohortError(f"ROI {name!r} of RTSTRUCT {str(path)!r} has no contours", **where)
    kinds = sorted({str(c.ContourGeometricType) for c in contours})
    if kinds != ["CLOSED_PLANAR"]:
        what = "a POINT ROI (a marker)" if "POINT" in kinds else f"made of {'/'.join(kinds)}"
        raise CohortError(
            f"ROI {name!r} of RTSTRUCT {str(path)!r} is {what}, not a region: only CLOSED_PLANAR "
            "contours enclose voxels",
            **where,
        )
    array = np.zeros(tuple(grid.size)[::-1], dtype=bool)  # (z, y, x)
    to_index = np.linalg.inv(np.reshape(grid.direction, (3, 3)) * np.asarray(grid.spacing))
    for i, contour in enumerate(contours):
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        index = (points - np.asarray(grid.origin)) @ to_index.T  # continuous (x, y, z)
        z = _contour_slice(index, i, name, path, grid, where)
        array[z] ^= even_odd_inside(index[:, :2], grid.size[0], grid.size[1])
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return image


def _roi_number(names, roi, path, where):
    """The ROINumber whose ROIName is `roi` (exactly, else ignoring case), or the only ROI."""
    listed = ", ".join(repr(n) for n in names.values())
    if roi is None:
        if len(names) == 1:
            return next(iter(names))
        raise CohortError(
            f"RTSTRUCT {str(path)!r} holds {len(names)} ROIs ({listed}); choose one by appending "
            "'#roi=NAME' to the cell",
            **where,
        )
    text = str(roi).strip()
    found = [k for k, n in names.items() if n == text] or [
        k for k, n in names.items() if n.casefold() == text.casefold()
    ]
    if len(found) == 1:
        return found[0]
    said = f"{len(found)} ROIs named {text!r}" if found else f"no ROI named {text!r}"
    raise CohortError(f"RTSTRUCT {str(path)!r} has {said}; its ROIs: {listed}", **where)


def _contour_slice(index, i, name, path, grid, where):
    """The slice index of contour `i` (points as continuous grid indices), or the error."""
    what = f"contour {i + 1} of ROI {name!r} in RTSTRUCT {str(path)!r}"
    z = int(np.round(np.median(index[:, 2])))
    off = float(np.max(np.abs(index[:, 2] - z)))
    if off > SLICE_SPACING_TOLERANCE:
        raise CohortError(
            f"{what} is not on one of the image's slice planes: its points lie up to "
            f"{off * grid.spacing[2]:.3g} mm from the plane of slice {z} (tolerated: "
            f"{SLICE_SPACING_TOLERANCE:.0%} of the {grid.spacing[2]:.4g}-mm slice spacing); the "
            "contours were drawn on another image or in another orientation",
            **where,
        )
    low, high = index[:, :2].min(axis=0), index[:, :2].max(axis=0)
    size = np.asarray(grid.size[:2])
    if not 0 <= z < grid.size[2] or np.any(low < -0.5) or np.any(high > size - 0.5):
        raise CohortError(
            f"{what} lies outside the image: its points span the voxel indices "
            f"{fmt(low)} to {fmt(high)} on slice {z} of an image of size {fmt(grid.size)}",
            **where,
        )
    return z


def even_odd_inside(polygon, width, height):
    """Which voxel centres of a ``height × width`` slice lie inside `polygon` (even-odd rule).

    `polygon` holds ``(x, y)`` vertices in voxel indices (closed implicitly; a repeated first
    vertex is harmless). Returns a ``(height, width)`` boolean array. Edges are half-open: a
    centre on an edge is inside where the polygon lies to its right, so that two polygons sharing
    an edge never both claim a centre on it.
    """
    inside = np.zeros((height, width), dtype=bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    cols = np.arange(max(0, int(np.ceil(x0.min()))), min(width, int(np.floor(x0.max())) + 1))
    rows = np.arange(max(0, int(np.ceil(y0.min()))), min(height, int(np.floor(y0.max())) + 1))
    if not cols.size or not rows.size:
        return inside
    px, py = np.meshgrid(cols.astype(float), rows.astype(float))
    box = np.zeros(px.shape, dtype=bool)
    for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
        if b == d:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = (b > py) != (d > py)
        box ^= crosses & (px < a + (py - b) * (c - a) / (d - b))
    inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = box
    return inside
