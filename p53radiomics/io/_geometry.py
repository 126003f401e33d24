"""The geometry of an image (size, spacing, origin, direction, components), read from a
:class:`SimpleITK.Image` or from a file's header, and the one rule of :data:`GEOMETRY_TOLERANCE`."""

from collections import namedtuple

import numpy as np
import SimpleITK as sitk

from .._settings import GEOMETRY_TOLERANCE
from ..exceptions import CohortError
from ..utils._sitk import sitk_reason

__all__ = [
    "GeometryInfo",
    "check_geometry",
    "check_volume",
    "fmt",
    "geometry",
    "geometry_difference",
    "header_geometry",
    "read_header",
    "require_same_geometry",
]

#: What is compared of an image and its mask, and checked of a volume: every field a tuple but
#: ``components``, the number of components per pixel.
GeometryInfo = namedtuple("GeometryInfo", ["size", "spacing", "origin", "direction", "components"])


def geometry(image):
    """The :class:`GeometryInfo` of a :class:`SimpleITK.Image`."""
    return GeometryInfo(
        tuple(image.GetSize()),
        tuple(image.GetSpacing()),
        tuple(image.GetOrigin()),
        tuple(image.GetDirection()),
        image.GetNumberOfComponentsPerPixel(),
    )


def read_header(path, patient_id, column, *, what="image", image_io=None):
    """A :class:`SimpleITK.ImageFileReader` that has read the header of `path`, not its pixels.

    `image_io` names the ITK reader to use (``None``: the one that recognises the file); `what`
    names the file in the error raised when the header cannot be read.
    """
    reader = sitk.ImageFileReader()
    if image_io is not None:
        reader.SetImageIO(image_io)
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CohortError(
            f"cannot read {what} {str(path)!r}: {sitk_reason(exc)}",
            patient_id=patient_id,
            column=column,
        ) from exc
    return reader


def header_geometry(reader):
    """The :class:`GeometryInfo` of a file, from a :class:`SimpleITK.ImageFileReader` that has read
    its header (``ReadImageInformation``)."""
    return GeometryInfo(
        tuple(reader.GetSize()),
        tuple(reader.GetSpacing()),
        tuple(reader.GetOrigin()),
        tuple(reader.GetDirection()),
        reader.GetNumberOfComponents(),
    )


def check_volume(info, patient_id, column):
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
    return geometry_difference(geometry(image), geometry(mask), tolerance)


def fmt(values):
    """Numbers as ``(a, b, c)``, six significant digits each, for the messages."""
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def geometry_difference(a, b, tolerance):
    """The rule of :data:`GEOMETRY_TOLERANCE`, in one place: `a` is the image, `b` the mask."""
    if a.size != b.size:
        return f"size differs: image {fmt(a.size)}, mask {fmt(b.size)}"
    scale = tolerance * min(a.spacing)
    tolerated = f"tolerated: {scale:.3g} mm, {tolerance:g} of the smallest voxel spacing"
    for name in ("spacing", "origin"):
        by = float(np.max(np.abs(np.subtract(getattr(a, name), getattr(b, name)))))
        if by > scale:
            return (
                f"{name} differs: image {fmt(getattr(a, name))}, mask {fmt(getattr(b, name))} "
                f"(by {by:.3g} mm; {tolerated})"
            )
    by = float(np.max(np.abs(np.subtract(a.direction, b.direction))))
    if by > tolerance:
        return (
            f"direction differs: image {fmt(a.direction)}, mask {fmt(b.direction)} "
            f"(a cosine by {by:.3g}; tolerated: {tolerance:g})"
        )
    return None


def require_same_geometry(image, mask, tolerance, *, patient_id, image_column, mask_column):
    """Raise unless the :class:`GeometryInfo` `mask` matches `image` within `tolerance`; the error
    names the patient and the mask's column."""
    diff = geometry_difference(image, mask, tolerance)
    if diff is not None:
        raise CohortError(
            f"mask and image {image_column!r} do not share geometry: {diff}",
            patient_id=patient_id,
            column=mask_column,
        )
