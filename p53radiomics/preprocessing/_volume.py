"""The SimpleITK volume maths of :class:`~p53radiomics.N4Resampler`, on one image and its mask.

Shrinking (:func:`subsample`), the body foreground (:func:`body_foreground`), N4's bias-field
estimate (:func:`estimate_log_bias_field`), the crop around the ROI (:func:`roi_region`,
:func:`crop`), resampling (:func:`resample`) and the grey-level normalisation, chained by
:func:`preprocess_volume` in the image's own voxel frame (:func:`voxel_frame`, :func:`to_world`).
"""

import math
from numbers import Integral, Real

import numpy as np
import SimpleITK as sitk

from ..exceptions import CohortError
from ..io import check_geometry, read_mask

__all__ = [
    "INTERPOLATORS",
    "ImageProblem",
    "body_foreground",
    "crop",
    "estimate_log_bias_field",
    "preprocess_volume",
    "read_repeated_mask",
    "RepeatedMaskOutsideCrop",
    "resample",
    "resample_like",
    "roi_region",
    "shrink_factors",
    "subsample",
    "to_world",
    "voxel_frame",
    "volume_settings",
    "voxels_outside",
]

#: SimpleITK interpolators of the images, by the name ``N4Resampler(interpolation=...)`` takes.
INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}


def preprocess_volume(
    image,
    mask,
    *,
    spacing,
    bias_correction,
    shrink_factor,
    n_iterations,
    normalization,
    percentiles,
    margin_mm,
    interpolation,
    repeated=(),
):
    """The four steps on one image and its mask (a binary ``uint8`` image on the same grid).

    Every step works in the image's own voxel frame (:func:`voxel_frame`): the output voxels
    depend on the input voxels and spacing only, never on the direction cosines or the origin, and
    the input's direction and origin are put back on the output (:func:`to_world`).

    `repeated` holds further masks of the same image (repeated ROIs: a second reader's, a second
    session's), each on the image's grid. They go through the crop and the resampling the primary
    mask goes through, onto its output grid (:func:`resample_like`); the crop box is the primary
    ROI's, so that the primary output does not depend on them, and a repeated ROI reaching beyond
    it raises :class:`RepeatedMaskOutsideCrop` (never cut silently). Returns ``(image, mask,
    repeated_masks)``, the last a list in the order of `repeated`.
    """
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    image = voxel_frame(sitk.Cast(image, sitk.sitkFloat32))
    mask = voxel_frame(mask)
    repeated = [voxel_frame(m) for m in repeated]
    # `reference` and `foreground`: the normalisation's statistics, on the shrunk grid.
    if bias_correction:
        log_field, reference, foreground = estimate_log_bias_field(
            image, shrink_factor, n_iterations
        )
    else:
        reference = subsample(image, shrink_factors(image.GetSize(), shrink_factor))
        log_field, foreground = None, body_foreground(reference)

    region = roi_region(mask, margin_mm)
    for number, other in enumerate(repeated):
        outside = voxels_outside(other, region)
        if outside:
            raise RepeatedMaskOutsideCrop(number, outside, margin_mm)
    image, mask = crop(image, region), crop(mask, region)
    repeated = [crop(m, region) for m in repeated]
    if log_field is not None:
        image = image / sitk.Exp(crop(log_field, region))

    if spacing is not None:
        image, mask = resample(image, mask, spacing, INTERPOLATORS[interpolation])
        repeated = [resample_like(m, mask) for m in repeated]

    if normalization is not None:
        values = sitk.GetArrayViewFromImage(reference)[
            sitk.GetArrayViewFromImage(foreground) > 0
        ].astype(np.float64)
        if normalization == "zscore":
            center, scale = values.mean(), values.std()
        else:
            low, high = np.percentile(values, percentiles)
            center, scale = low, high - low
        if not scale > 0:
            raise ImageProblem(
                f"the image is constant in its body foreground: cannot apply {normalization!r} normalization"
            )
        image = sitk.Cast((image - float(center)) / float(scale), sitk.sitkFloat32)
    repeated = [to_world(m, origin, direction) for m in repeated]
    return to_world(image, origin, direction), to_world(mask, origin, direction), repeated


def voxel_frame(image):
    """`image` with an identity direction and origin 0: the same voxels and spacing, in a new image.

    ITK filters map voxels through physical space (index -> point -> index) wherever they change
    the grid. Rounding in that round trip depends on the direction matrix and the origin, so where a
    result lands exactly between two voxels, the voxel chosen does too (see :func:`subsample`).
    In this frame every such computation is the same for the same voxels and spacing.
    """
    local = sitk.Image(image)  # SimpleITK copies the buffer before changing it: the input is kept
    local.SetOrigin((0.0,) * image.GetDimension())
    local.SetDirection(np.eye(image.GetDimension()).ravel().tolist())
    return local


def to_world(image, origin, direction):
    """Put an image computed in a voxel frame (:func:`voxel_frame`) back at `origin`, `direction`.

    A point ``p`` of the voxel frame is ``origin + direction @ p`` in the input's physical space.
    """
    image.SetOrigin(tuple(float(v) for v in origin + direction @ np.asarray(image.GetOrigin())))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image


def shrink_factors(size, shrink_factor):
    """Shrink factor per axis, capped so that every axis keeps at least 2 voxels."""
    return [max(1, min(shrink_factor, s // 2)) for s in size]


def subsample(image, factors):
    """Every ``factors[i]``-th voxel along axis ``i``, picked by index: what ``sitk.Shrink`` means to do.

    The output has ``max(1, size // factor)`` voxels per axis, like ``sitk.Shrink``'s; voxel ``k``
    is the input's voxel ``k * factor + factor // 2`` (the centre of its bin of ``factor`` voxels,
    or the voxel just past it for an even factor), and its origin and spacing are that voxel's
    position and ``factor`` times the input's spacing, so the geometry describes the voxels held.

    ``sitk.Shrink`` itself is not used. It places the output's first voxel at the centre of the
    first bin, maps that point back to an input index through physical space and rounds it
    (``TransformPhysicalPointToIndex``), and keeps, for the whole volume, the voxels at that
    offset. For an even factor the centre lies exactly halfway between two voxels, so the sign of a
    rounding error of about 1e-16 in the round trip decides which of the two is kept, and that
    error depends on the direction matrix, the spacing and the origin. Measured on a 40 x 40 x 10
    volume shrunk by (2, 2, 1), at 1 mm in-plane: the x and y offsets kept are (1, 1) with the
    identity direction and tilted by 0.1 degrees about z, (0, 1) at 1 degree, (0, 0) at 20; at
    0.74 mm: (0, 0), (1, 0) at 0.1 degree, (1, 1) at 20. Whether a given tilt changes the voxels
    is chance, and N4 fitted on other voxels gives another bias field. ``sitk.BinShrink`` works on
    indices and is not affected, but it averages each bin; this function keeps voxels of the
    volume itself, as the normalisation statistics need (see :class:`~p53radiomics.N4Resampler`, Notes).
    """
    size = image.GetSize()
    start = [f // 2 for f in factors]
    count = [max(1, s // f) for s, f in zip(size, factors, strict=True)]
    stop = [b + f * (n - 1) + 1 for b, f, n in zip(start, factors, count, strict=True)]
    return sitk.Slice(image, start, stop, [int(f) for f in factors])


class ImageProblem(ValueError):
    """A problem with one image's contents, turned into a CohortError naming its patient and column."""


def body_foreground(image):
    """Voxels above the triangle threshold (the body, not the air), as a ``uint8`` image.

    The triangle method puts the threshold at the foot of the histogram's main peak, the air of an
    MR volume, so that every tissue is kept. The whole volume where it leaves nothing (a constant
    image).
    """
    array = sitk.GetArrayViewFromImage(image)
    if array.min() == array.max():  # the threshold filters fail, at random, on a constant image
        return image == image
    foreground = sitk.TriangleThreshold(image, 0, 1, 256)
    if not sitk.GetArrayViewFromImage(foreground).any():
        foreground = foreground == 0
    return foreground


def estimate_log_bias_field(image, shrink_factor=4, n_iterations=(50, 50, 50, 50)):
    """Estimate N4's log bias field on a subsampled copy of `image` and evaluate it on `image`'s grid.

    Parameters
    ----------
    image : SimpleITK.Image
        A ``float32`` 3D image with positive intensities in the body.
    shrink_factor : int, default=4
        See :class:`~p53radiomics.N4Resampler`.
    n_iterations : sequence of int, default=(50, 50, 50, 50)
        See :class:`~p53radiomics.N4Resampler`.

    Returns
    -------
    log_field : SimpleITK.Image
        The log bias field on `image`'s full-resolution grid (divide the image by its exponential).
    corrected : SimpleITK.Image
        The full-resolution corrected image subsampled to the shrunk grid (:func:`subsample`
        keeps every `shrink_factor`-th voxel, so these are exactly voxels of the corrected volume).
    foreground : SimpleITK.Image
        The body foreground N4 was fitted on, on the shrunk grid.
    """
    factors = shrink_factors(image.GetSize(), shrink_factor)
    shrunk = subsample(image, factors)
    foreground = body_foreground(shrunk) & (shrunk > 0)
    if not sitk.GetArrayViewFromImage(foreground).any():
        raise ImageProblem(
            "no voxel with a positive intensity: N4 needs positive intensities "
            "(for an image that is already normalised, set bias_correction=False)"
        )
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(n) for n in n_iterations])
    n4.Execute(shrunk, foreground)
    log_field = n4.GetLogBiasFieldAsImage(image)
    return log_field, shrunk / sitk.Exp(subsample(log_field, factors)), foreground


def roi_region(mask, margin_mm):
    """Index ranges ``((x0, x1), (y0, y1), (z0, z1))`` of the ROI's bounding box plus the margin."""
    size = mask.GetSize()
    if margin_mm is None:
        return tuple((0, s) for s in size)
    array = sitk.GetArrayViewFromImage(mask)  # (z, y, x)
    region = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != 2 - axis)
        present = np.flatnonzero(array.any(axis=other))
        margin = math.ceil(margin_mm / mask.GetSpacing()[axis] - 1e-9)
        region.append(
            (max(0, int(present[0]) - margin), min(size[axis], int(present[-1]) + 1 + margin))
        )
    return tuple(region)


class RepeatedMaskOutsideCrop(ImageProblem):
    """A repeated ROI (number `number` of ``preprocess_volume``'s `repeated`) beyond the crop box."""

    def __init__(self, number, n_voxels, margin_mm):
        self.number = number
        super().__init__(
            f"the repeated ROI has {n_voxels} voxels outside the crop box (the primary ROI's "
            f"bounding box grown by margin_mm={margin_mm} mm): it would be cut. Raise margin_mm "
            "(or set it to None), or check that this mask outlines the same lesion as the "
            "primary one"
        )


def voxels_outside(mask, region):
    """Number of non-zero voxels of `mask` outside `region` (see :func:`roi_region`)."""
    array = sitk.GetArrayViewFromImage(mask)  # (z, y, x)
    (x0, x1), (y0, y1), (z0, z1) = region
    return int(np.count_nonzero(array)) - int(np.count_nonzero(array[z0:z1, y0:y1, x0:x1]))


def crop(image, region):
    (x0, x1), (y0, y1), (z0, z1) = region
    if (x0, y0, z0) == (0, 0, 0) and (x1, y1, z1) == image.GetSize():
        return image
    return image[x0:x1, y0:y1, z0:z1]


def resample(image, mask, spacing, interpolator):
    """Resample image and mask onto one grid of `spacing` covering the image's extent, centred on it.

    The output grid's axes are the image's own (its direction is kept), so each output voxel is a
    fixed point of the input's index space. :func:`preprocess_volume` calls it in the voxel frame
    (identity direction, origin 0), where the index arithmetic is the same for every direction: a
    nearest-neighbour sample that falls exactly between two mask voxels picks the same one.
    """
    old_spacing = np.asarray(image.GetSpacing())
    new_spacing = np.asarray(spacing)
    old_size = np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    centre = np.asarray(image.GetOrigin()) + direction @ ((old_size - 1) / 2 * old_spacing)
    origin = centre - direction @ ((new_size - 1) / 2 * new_spacing)

    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in new_size])
    resampler.SetOutputSpacing([float(s) for s in new_spacing])
    resampler.SetOutputOrigin([float(o) for o in origin])
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetUseNearestNeighborExtrapolator(True)

    resampler.SetInterpolator(interpolator)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    image = resampler.Execute(image)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetOutputPixelType(sitk.sitkUInt8)
    return image, resampler.Execute(mask)


def resample_like(mask, reference):
    """`mask` resampled by nearest neighbour onto `reference`'s grid, as :func:`resample` does its mask.

    With the same interpolator, extrapolation and output type as the primary mask's resampling, on
    the same grid (size, spacing, origin, direction of `reference`, the resampled primary mask):
    a repeated ROI identical to the primary one gives an identical output.
    """
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(reference)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetOutputPixelType(sitk.sitkUInt8)
    return resampler.Execute(mask)


def read_repeated_mask(row, patient_id, image_column, column, image, label=None):
    """The repeated mask of `column` of `row` (binary ``uint8``), checked to lie on `image`'s grid.

    `label`: the label to keep, as :func:`~p53radiomics.io.read_mask` takes it.
    """
    cell = row.iat[0, row.columns.get_loc(column)]
    mask = read_mask(cell, patient_id=patient_id, column=column, reference=image, label=label)
    difference = check_geometry(image, mask)
    if difference is not None:
        raise CohortError(
            f"the repeated mask does not lie on its image's grid (column {image_column!r}): "
            f"{difference}",
            patient_id=patient_id,
            column=column,
        )
    mask.CopyInformation(image)  # a new image (read_mask's): the input is untouched
    return mask


def volume_settings(
    spacing,
    bias_correction,
    shrink_factor,
    n_iterations,
    normalization,
    percentiles,
    margin_mm,
    interpolation,
):
    """:class:`~p53radiomics.N4Resampler`'s parameters checked, as :func:`preprocess_volume` takes them.

    Canonical (tuples of floats and ints), with the settings that do not shape the output set to
    ``None``, so that equal outputs have one cache key. A ValueError says what is wrong.
    """
    given = {"spacing": spacing, "n_iterations": n_iterations, "percentiles": percentiles}
    if spacing is not None:
        spacing = (
            (float(spacing),) * 3 if isinstance(spacing, Real) else tuple(float(s) for s in spacing)
        )
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(
                f"spacing must be a positive number or 3 positive numbers (x, y, z), got {given['spacing']!r}"
            )
    n_iterations = tuple(given["n_iterations"])
    if not n_iterations or not all(isinstance(n, Integral) and n >= 1 for n in n_iterations):
        raise ValueError(
            f"n_iterations must be a non-empty sequence of positive integers, got {given['n_iterations']!r}"
        )
    percentiles = tuple(float(p) for p in given["percentiles"])
    if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise ValueError(
            f"percentiles must be (low, high) with 0 <= low < high <= 100, got {given['percentiles']!r}"
        )
    settings = {
        "spacing": spacing,
        "bias_correction": bool(bias_correction),
        "shrink_factor": int(shrink_factor),
        "n_iterations": tuple(int(n) for n in n_iterations),
        "normalization": normalization,
        "percentiles": percentiles,
        "margin_mm": None if margin_mm is None else float(margin_mm),
        "interpolation": interpolation,
    }
    if not settings["bias_correction"]:
        settings["n_iterations"] = None  # irrelevant: keeps equal outputs under one cache key
    if settings["normalization"] != "percentile":
        settings["percentiles"] = None
    return settings
