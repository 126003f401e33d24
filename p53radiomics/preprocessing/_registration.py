"""One mask for all phases: the shared ``mask`` carried from its phase to the other phases.

:class:`~p53radiomics.N4Resampler` ``(mask_phase=..., registration=...)`` reads, for each phase
that uses the shared ``mask`` column, the mask on the grid of the `mask_phase` image (the
*reference*) and carries it onto the phase's own grid (:func:`read_item`):

- ``registration=None``: by physical coordinates alone (nearest neighbour), so a mask drawn on a
  phase with another grid can serve the others;
- ``"rigid"``: through the rigid transform that registers the phase's image to the reference on
  the region around the ROI (:func:`register_rigid`), which corrects the misregistration between
  breath-holds. Each result is checked against :data:`MAX_TRANSLATION_MM` and
  :data:`MAX_ROTATION_DEG`: an absurd one is refused, never used.

SimpleITK's registration framework (Mattes mutual information, regular-step gradient descent)
does the work; only its settings and checks are written here.
"""

import math
import time

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ..exceptions import CohortError
from ..io import check_geometry, check_voxel_values, load_case, read_image, read_mask
from ..utils._sitk import sitk_reason
from ._volume import crop, read_repeated_mask, roi_region

__all__ = [
    "MAX_ROTATION_DEG",
    "MAX_TRANSLATION_MM",
    "REGISTRATION_COLUMNS",
    "REGISTRATION_MARGIN_MM",
    "REGISTRATION_SEED",
    "carried_phases",
    "carry_mask",
    "read_item",
    "register_rigid",
    "registration_table",
]

#: Margin (mm) by which the ROI's bounding box (on the reference) is grown into the region whose
#: voxels drive the registration: the lesion and its surroundings, not the whole field of view,
#: whose other organs move differently between breath-holds. Independent of ``margin_mm``. On 12
#: patients of the synthetic cohort, 30 mm carried masks better than 20 (mean Dice 0.93 against
#: 0.92) and as well as 40, at three quarters of its cost.
REGISTRATION_MARGIN_MM = 30.0
#: A registration that moves the ROI's centre further than this (mm) is refused: breath-hold
#: misregistration is a few millimetres, so more means the optimiser went astray.
MAX_TRANSLATION_MM = 10.0
#: A registration that rotates by more than this angle (degrees, about the ROI's centre) is refused.
MAX_ROTATION_DEG = 5.0
#: Seed of the metric's random sampling: the same inputs give the same transform. (Not 0, which
#: SimpleITK reads as ``sitkWallClock``: a new seed at every call.)
REGISTRATION_SEED = 1
# Share of the region's voxels sampled by the metric at each iteration, and the histogram bins.
_SAMPLING_PERCENTAGE = 0.25
_HISTOGRAM_BINS = 32
# Weight of the rotation's steps against the translation's (the optimiser's weights): on the few
# voxels of a small region, free rotations fitted noise (up to 50 degrees on the synthetic cohort,
# whose phases only translate); weighted so, they stay within 2 degrees there and the carried
# masks' Dice is the best of the weights tried (0.1, 0.05, 0.02, 0.01), near that of the best
# translation found by exhaustive search.
_ROTATION_WEIGHT = 0.02
# Share of the region the phase's image must cover (before registration) to be registered.
_MIN_OVERLAP = 0.5

#: Columns of ``N4Resampler.registrations_`` (besides its ``patient_id`` index and ``phase``).
REGISTRATION_COLUMNS = [
    "reference",
    "translation_x_mm",
    "translation_y_mm",
    "translation_z_mm",
    "translation_mm",
    "rotation_deg",
    "metric",
    "iterations",
    "seconds",
]


def carried_phases(phase_cols, phases, mask_phase, registration):
    """``{phase: (reference image column, registration)}``, or ``()`` where the mask is not carried.

    It is carried to the phases using the shared ``mask`` column, other than `mask_phase`. Raises
    ValueError for `registration` without `mask_phase`, a `mask_phase` not in `phases`, and a
    `mask_phase` while no phase uses the shared mask (a setting that would do nothing is more
    likely a mistake than a wish, as scikit-learn refuses a parameter that names what the data
    lacks). `phase_cols` may be None (the parameters alone are checked).
    """
    names = [phases] if isinstance(phases, str) else list(phases)
    if mask_phase is None and registration is not None:
        raise ValueError(
            f"registration={registration!r} needs mask_phase: the phase the shared 'mask' "
            "column was drawn on, which the other phases are registered to"
        )
    if mask_phase is not None and mask_phase not in names:
        raise ValueError(f"mask_phase={mask_phase!r} is not one of phases={tuple(names)!r}")
    if phase_cols is None or mask_phase is None:
        return {pc.phase: () for pc in phase_cols or ()}
    shared = [pc for pc in phase_cols if pc.mask == "mask"]
    if not shared:
        raise ValueError(
            f"mask_phase={mask_phase!r} is given but no phase uses the shared 'mask' column: "
            "every phase has its own f'{phase}_mask' column. Set mask_phase=None (and "
            "registration=None), or drop the per-phase mask columns to carry one mask"
        )
    reference = next(pc.image for pc in phase_cols if pc.phase == mask_phase)
    carried = {pc.phase for pc in shared if pc.phase != mask_phase}
    return {pc.phase: (reference, registration) if pc.phase in carried else () for pc in phase_cols}


def _cell(row, column):
    return row.iat[0, row.columns.get_loc(column)]


def read_item(row, item):
    """``(image, mask, repeated masks, record)`` of one (patient, phase) item of N4Resampler.

    `row` is the patient's one-row table. The image is checked (no NaN, not constant) and the
    repeated masks read on its grid. `item.carry` is ``()`` (the phase's own mask, read by
    :func:`~p53radiomics.io.load_case`; `record` None) or ``(reference column, registration)``:
    the shared mask is read on the reference image's grid and carried onto the phase's
    (:func:`carry_mask`), through :func:`register_rigid`'s transform (its `record`) for
    ``"rigid"``. Raises :class:`CohortError` naming the patient and the column at fault.
    """
    image, mask, record = _image_and_mask(row, item)
    pid = item.patient_id
    repeated = [
        read_repeated_mask(row, pid, item.image_column, column, image, item.label)
        for _, column in item.repeated
    ]
    return image, mask, repeated, record


def _image_and_mask(row, item):
    pid = item.patient_id
    if not item.carry:
        image, mask = load_case(row, pid, (item.phase,), label=item.label)[item.phase]
        check_voxel_values(image, patient_id=pid, column=item.image_column)
        return image, mask, None
    reference_column, registration = item.carry
    image = read_image(_cell(row, item.image_column), patient_id=pid, column=item.image_column)
    check_voxel_values(image, patient_id=pid, column=item.image_column)
    reference = read_image(_cell(row, reference_column), patient_id=pid, column=reference_column)
    check_voxel_values(reference, patient_id=pid, column=reference_column)
    where = {"patient_id": pid, "column": item.mask_column}
    mask = read_mask(_cell(row, item.mask_column), reference=reference, label=item.label, **where)
    difference = check_geometry(reference, mask)
    if difference is not None:
        raise CohortError(
            f"the shared mask does not lie on the grid of {reference_column!r}, the phase it was "
            f"drawn on (mask_phase): {difference}",
            **where,
        )
    mask.CopyInformation(reference)  # a new image (read_mask's): the input is untouched
    record = None
    transform = sitk.Euler3DTransform()
    if registration == "rigid":
        transform, record = register_rigid(
            reference, image, mask, patient_id=pid, column=item.image_column,
            reference_column=reference_column,
        )  # fmt: skip
    carried = carry_mask(mask, image, transform)
    if not sitk.GetArrayViewFromImage(carried).any():
        raise CohortError(
            f"the shared mask, carried from {reference_column!r}, falls outside this phase's image "
            f"{item.image_column!r} (the two images do not cover the same region)",
            **where,
        )
    return image, carried, record


def carry_mask(mask, image, transform):
    """`mask` (on the reference's grid) resampled by nearest neighbour onto `image`'s grid.

    `transform` maps reference points to the phase's points (as :func:`register_rigid` returns it);
    the phase's voxel centres are mapped back through its inverse. Voxels that fall outside the
    mask's grid are 0.
    """
    return sitk.Resample(
        mask, image, transform.GetInverse(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )


def _region_values(fixed, moving, where, reference_column):
    """Check that `moving` covers the region `fixed` and that neither is constant there."""
    nan = float("nan")
    on_region = sitk.Resample(
        moving, fixed, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkLinear, nan
    )
    values = sitk.GetArrayViewFromImage(on_region)
    covered = np.isfinite(values)
    if covered.mean() < _MIN_OVERLAP:
        raise CohortError(
            f"rigid registration to {reference_column!r} refused: this image covers "
            f"{100 * covered.mean():.0f}% of the region around the ROI (at least "
            f"{100 * _MIN_OVERLAP:.0f}% needed): the two phases do not overlap",
            **where,
        )
    for name, array in (("this image", values[covered]), (repr(reference_column), fixed)):
        array = sitk.GetArrayViewFromImage(array) if isinstance(array, sitk.Image) else array
        if not np.ptp(array) > 0:
            raise CohortError(
                f"rigid registration to {reference_column!r} refused: {name} is constant in the "
                "region around the ROI, which holds nothing to register",
                **where,
            )
    return on_region


def register_rigid(reference, image, mask, *, patient_id, column, reference_column):
    """The rigid transform registering `image` (moving) to `reference` (fixed) around the ROI.

    The fixed region is `reference` cropped to `mask`'s bounding box grown by
    :data:`REGISTRATION_MARGIN_MM`. Euler angles and a translation, centred on that region
    (SimpleITK's ``CenteredTransformInitializer``, geometry mode: no initial motion); Mattes mutual
    information (:data:`REGISTRATION_SEED`-seeded random sampling); regular-step gradient descent
    with scales from the physical shift and the rotation's steps weighted down, at full resolution
    (the region is small). Returns ``(transform, record)``: the
    transform maps reference points to `image`'s points, `record` holds its translation (mm, of
    the region's centre), rotation angle (degrees), the final metric and the seconds taken.
    Raises :class:`CohortError` (column `column`) for a failed, degenerate or absurd result.
    """
    start = time.perf_counter()
    where = {"patient_id": patient_id, "column": column}
    fixed = sitk.Cast(crop(reference, roi_region(mask, REGISTRATION_MARGIN_MM)), sitk.sitkFloat32)
    moving = sitk.Cast(image, sitk.sitkFloat32)
    on_region = _region_values(fixed, moving, where, reference_column)
    transform = sitk.CenteredTransformInitializer(
        fixed, on_region, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    transform = sitk.Euler3DTransform(transform)
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(1)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=_HISTOGRAM_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(_SAMPLING_PERCENTAGE, REGISTRATION_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=100, relaxationFactor=0.5
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetOptimizerWeights([_ROTATION_WEIGHT] * 3 + [1.0] * 3)
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise CohortError(
            f"rigid registration to {reference_column!r} failed: {sitk_reason(exc)}", **where
        ) from exc
    translation = np.asarray(transform.GetTranslation())
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    angle = math.degrees(math.acos(min(1.0, max(-1.0, (np.trace(matrix) - 1.0) / 2.0))))
    metric, shift = float(method.GetMetricValue()), float(np.linalg.norm(translation))
    if not (math.isfinite(metric) and shift <= MAX_TRANSLATION_MM and angle <= MAX_ROTATION_DEG):
        raise CohortError(
            f"rigid registration to {reference_column!r} refused: it moves the ROI by {shift:.3g} "
            f"mm and rotates it by {angle:.3g} degrees (metric {metric:.3g}); at most "
            f"{MAX_TRANSLATION_MM:g} mm and {MAX_ROTATION_DEG:g} degrees are taken as breath-hold "
            "misregistration",
            **where,
        )
    record = dict(zip(REGISTRATION_COLUMNS, [reference_column, *translation, shift], strict=False))
    record.update(
        rotation_deg=angle,
        metric=metric,
        iterations=int(method.GetOptimizerIteration()),
        seconds=time.perf_counter() - start,
    )
    return transform, record


def registration_table(items, results):
    """``N4Resampler.registrations_``: one row per registered (patient, phase) pair.

    `results` are the case loop's, by item: CohortErrors, or tuples whose last item is the record
    (None for a pair not registered). The patient and phase are the item's: a record read from
    the cache may be another patient's with the same images.
    """
    records = [
        {**results[i][-1], "patient_id": i.patient_id, "phase": i.phase}
        for i in items
        if not isinstance(results[i], CohortError) and results[i][-1] is not None
    ]
    table = pd.DataFrame(records, columns=["patient_id", "phase", *REGISTRATION_COLUMNS])
    # indexed by patient as ``skipped_`` is (a model file keeps no MultiIndex)
    return table.set_index("patient_id")
