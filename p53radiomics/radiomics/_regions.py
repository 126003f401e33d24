"""The regions :class:`RadiomicsExtractor` extracts from: the tumour, and peritumoral rings.

``regions=("tumour", "ring5mm")`` extracts each phase's features from the tumour ROI and from the
shell of 5 mm around it. A ring of ``k`` mm is the voxels outside the tumour whose centre lies
within ``k`` mm of a tumour voxel's centre, measured in millimetres with the image's own spacing
(a signed Maurer distance map, ``sitk.SignedMaurerDistanceMap(useImageSpacing=True)``: on a
0.8 x 0.8 x 3 mm grid a 5-mm ring is 6 voxels thick in plane and 1 across slices), cut at the
image's edge.

The ring is not clipped to the body. A body mask computed on the image the extractor is given
(the triangle threshold N4Resampler uses on a whole volume) is wrong on N4Resampler's output:
that is cropped around the tumour, holds no air, and the threshold then falls inside the tissue.
On the synthetic cohort it removed up to three quarters of a 5-mm ring, all of it tissue, in the
arterial phase. Clipping needs the body mask of the whole volume, which the extractor does not
see; a liver tumour's ring seldom reaches air, so none is applied rather than a wrong one.

Written here rather than taken from a library: PyRadiomics has no peritumoral regions, and the
ring is two SimpleITK calls on the case as :mod:`p53radiomics.io` reads it.
"""

import re

import pandas as pd
import SimpleITK as sitk

from ..exceptions import CohortError
from ..io import load_case
from ..utils._sitk import one_sitk_thread
from ._robustness import extract_perturbed
from ._worker import extract_phase

__all__ = [
    "TUMOUR",
    "check_regions",
    "extract_region",
    "region_columns",
    "region_prefix",
    "ring_mask",
]

#: The name of the tumour ROI itself among ``regions``.
TUMOUR = "tumour"
_RING = re.compile(r"ring(\d+(?:\.\d+)?)mm")


def check_regions(regions):
    """``regions`` checked: a list of ``(name, ring_mm)``, ``ring_mm`` None for the tumour.

    Each name is ``"tumour"`` or ``f"ring{k:g}mm"`` with ``k > 0`` (``"ring5mm"``,
    ``"ring2.5mm"``), written as ``f"ring{k:g}mm"`` writes it, so that one ring has one column
    name; the names are distinct. A ValueError or TypeError says what is wrong.

    Examples
    --------
    >>> from p53radiomics.radiomics._regions import check_regions
    >>> check_regions(("tumour", "ring5mm", "ring2.5mm"))
    [('tumour', None), ('ring5mm', 5.0), ('ring2.5mm', 2.5)]
    """
    if isinstance(regions, str) or not isinstance(regions, list | tuple) or not regions:
        raise TypeError(
            f"regions must be a non-empty list or tuple of region names, e.g. ('tumour', "
            f"'ring5mm'); got {regions!r}"
        )
    checked = []
    for name in regions:
        match = _RING.fullmatch(name) if isinstance(name, str) else None
        if name == TUMOUR:
            checked.append((name, None))
            continue
        if match is None or not float(match.group(1)) > 0:
            raise ValueError(
                f"regions: {name!r} is not a region; give 'tumour' or 'ring{{k}}mm' with k > 0 "
                "in mm, e.g. 'ring5mm'"
            )
        k = float(match.group(1))
        if name != f"ring{k:g}mm":
            raise ValueError(f"regions: write {name!r} as {f'ring{k:g}mm'!r} (one name per ring)")
        checked.append((name, k))
    names = [n for n, _ in checked]
    if len(set(names)) != len(names):
        raise ValueError(f"regions names a region twice: {list(regions)!r}")
    return checked


def region_prefix(name):
    """The prefix of a region's feature names after the phase: ``""`` or e.g. ``"ring5mm_"``."""
    return "" if name == TUMOUR else f"{name}_"


def region_columns(phases, regions, names):
    """The feature columns: phase by phase, region by region (`regions` checked), each `names`.

    ``f"{phase}_{name}"`` for the tumour, ``f"{phase}_ring5mm_{name}"`` for a ring. A ValueError
    if `phases` is not a non-empty list or tuple of distinct names.
    """
    if (
        isinstance(phases, str)
        or not isinstance(phases, list | tuple)
        or not phases
        or not all(isinstance(p, str) and p for p in phases)
        or len(set(phases)) != len(phases)
    ):
        raise ValueError(
            f"phases must be a non-empty list or tuple of distinct phase names, got {phases!r}"
        )
    return [f"{p}_{region_prefix(r)}{n}" for p in phases for r, _ in regions for n in names]


def ring_mask(image, mask, ring_mm):
    """The ring of `ring_mm` mm around the ROI `mask`, minus the ROI, on `image`'s grid.

    Parameters
    ----------
    image : SimpleITK.Image
        The image, whose grid the ring is on.
    mask : SimpleITK.Image
        The binary ``uint8`` ROI, on `image`'s grid.
    ring_mm : float
        Thickness of the ring, in mm.

    Returns
    -------
    ring : SimpleITK.Image
        ``uint8``, 1 in the ring, on `image`'s grid; empty where no voxel is within reach.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> from p53radiomics.radiomics._regions import ring_mask
    >>> image = sitk.GetImageFromArray(np.full((9, 9, 9), 100.0, dtype=np.float32))
    >>> mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    >>> mask[4, 4, 4] = 1
    >>> int(sitk.GetArrayFromImage(ring_mask(image, mask, 1.0)).sum())  # the 6 face neighbours
    6
    """
    distance = sitk.SignedMaurerDistanceMap(
        mask, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    shell = (distance <= float(ring_mm)) & (mask == 0)
    return sitk.Cast(shell, sitk.sitkUInt8)


def extract_region(case, patient_id, phase, params, verbose, label, ring_mm, *perturbation):
    """Worker: one (patient, phase) read with `label`, its ROI or its ring, then extracted.

    `case` is the one-row table :func:`~p53radiomics.radiomics._worker.extract_phase` takes. The
    mask of `label` (see :func:`~p53radiomics.io.load_case`), or its ring of `ring_mm` mm
    (:func:`ring_mask`), is handed to :func:`extract_phase` as a binary in-memory mask, or to
    :func:`~p53radiomics.radiomics._robustness.extract_perturbed` with `perturbation` (its seed and
    settings) where given. Returns what they return.
    """
    mask_column = next(c for c in case.columns if c != phase)
    try:
        with one_sitk_thread():
            image, mask = load_case(case, patient_id, phases=(phase,), label=label)[phase]
            if ring_mm is not None:
                mask = ring_mask(image, mask, ring_mm)
                if not sitk.GetArrayViewFromImage(mask).any():
                    raise CohortError(
                        f"the ring of {ring_mm:g} mm around the ROI of phase {phase!r} holds no "
                        "voxel of the image",
                        patient_id=patient_id,
                        column=mask_column,
                    )
    except CohortError as exc:
        return ("error", exc)
    one_row = pd.DataFrame({phase: [image], mask_column: [mask]}, index=case.index)
    if perturbation:
        return extract_perturbed(one_row, patient_id, phase, params, verbose, *perturbation)
    return extract_phase(one_row, patient_id, phase, params, verbose)
