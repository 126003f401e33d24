"""The robustness filter of :class:`RadiomicsExtractor`: ROI perturbations and the ICC of each feature.

A feature that changes when the contour moves by a millimetre is not a biomarker. The filter
compares each training patient's features from its primary ROI with those from repeated ROIs (a
second reader's, a second session's: the mask sets of the cohort table, see
:func:`p53radiomics.io.phase_columns`) or, where the table has none, from perturbations of the ROI
and image, and keeps the features whose intraclass correlation reaches a threshold.

The perturbations follow MIRP and Zwanenburg et al. (2019), simplified to one random draw of each
kind per perturbation (:data:`PERTURBATION_SETTINGS`):

- the contour grown or shrunk (either, at random) by ``grow_mm``, in millimetres whatever the
  voxel spacing: the ROI becomes the voxels whose centre lies within ``grow_mm`` of an ROI voxel's
  centre, or lies further than ``grow_mm`` from every background voxel's (a signed distance map
  computed with the image's spacing, so on a 0.8 x 0.8 x 3 mm grid 1 mm moves the contour by one
  voxel in plane and not at all across slices);
- image and ROI translated together by a sub-voxel shift, uniform in
  ``[-translation_voxels, translation_voxels]`` voxel along each axis, and rotated together about
  the slice normal through the ROI's centroid by an angle uniform in
  ``[-rotation_degrees, rotation_degrees]`` (linear interpolation of the image and of the ROI's
  signed distance map, which is then thresholded: the ROI stays one connected, smooth region);
- Gaussian noise added to the image at the image's own noise level (``noise=True``), estimated as
  the median absolute deviation of neighbouring voxels' differences along the first axis, divided
  by 0.6745 and by the square root of 2 (Donoho's estimator): the noise variance doubles.

Each perturbation is drawn from a seed of its own, derived from ``random_state``, the patient id and
the perturbation's number, so the same patient gets the same perturbations in every fold of a
cross-validation, and each perturbed extraction is cached under a key that holds its seed and the
settings.

Written here rather than taken from MIRP: MIRP is not a dependency, works on its own image objects
and runs its own feature extraction; the perturbations above are a few SimpleITK calls on the
cases as :mod:`p53radiomics.io` reads them, extracted by the same PyRadiomics worker as the
primary features.
"""

import hashlib
from numbers import Integral
from types import MappingProxyType

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ..exceptions import CohortError
from ..io import load_case, mask_set_patients, mask_sets
from ..metrics import reproducibility_table
from ..utils._cohort_step import CASE_RECORDS
from ..utils._sitk import one_sitk_thread
from ._params import feature_names
from ._worker import extract_phase

__all__ = [
    "FILTER_ATTRIBUTES",
    "PERTURBATION_SETTINGS",
    "RobustnessFilterMixin",
    "PRIMARY_LABEL",
    "extract_perturbed",
    "perturb_case",
    "perturbation_entropy",
    "perturbation_seed",
    "robust_features",
    "robustness_icc",
    "robustness_sources",
]

#: The perturbations' settings (see the module's docstring); part of every perturbed entry's key.
PERTURBATION_SETTINGS = MappingProxyType(
    {"grow_mm": 1.0, "translation_voxels": 0.5, "rotation_degrees": 5.0, "noise": True}
)

#: The label of the primary masks in the ICC tables (no mask set's name can hold parentheses).
PRIMARY_LABEL = "(primary)"

#: The ICC forms: ICC(A,1) for repeated ROIs, whose readers and sessions are the same for every
#: patient (Koo & Li 2016); ICC(1,1) for perturbations, which are drawn anew for each patient, so
#: that "perturbation 2" is no rater shared across patients (Zwanenburg et al. 2019).
REPEATED_KIND, PERTURBED_KIND = "ICC2", "ICC1"

#: What a fit with the filter sets.
FILTER_ATTRIBUTES = (
    "icc_",
    "robust_features_",
    "robustness_source_",
    "perturbation_entropy_",
    "robustness_cache_hits_",
    "robustness_cache_misses_",
)


# --------------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------------
def perturbation_entropy(random_state):
    """The integer from which every perturbation's seed is derived.

    An int is used as it is; ``None`` draws fresh entropy; a :class:`numpy.random.RandomState` or
    :class:`numpy.random.Generator` gives one draw.
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int64).max))
    raise ValueError(
        f"random_state must be None, an int or a numpy random state; got {random_state!r}"
    )


def perturbation_seed(entropy, patient_id, number):
    """The seed of perturbation `number` of `patient_id`: the same in every fold and process."""
    patient = int.from_bytes(hashlib.blake2b(str(patient_id).encode(), digest_size=8).digest())
    return int(np.random.SeedSequence([entropy, patient, number]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------------
# Perturbations
# --------------------------------------------------------------------------------------------------
def _signed_distance(mask):
    """Millimetres from each voxel centre to the nearest voxel centre across the ROI's edge.

    Negative inside (distance to the nearest background voxel), positive outside (to the nearest
    ROI voxel), so that growing and shrinking by the same distance are symmetric.
    """

    def distance(image):
        return sitk.GetArrayFromImage(
            sitk.SignedMaurerDistanceMap(
                image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
            )
        )

    inside = sitk.GetArrayViewFromImage(mask) > 0
    outside = sitk.Cast(sitk.GetImageFromArray((~inside).astype(np.uint8)), sitk.sitkUInt8)
    outside.CopyInformation(mask)
    signed = np.where(inside, -distance(outside), distance(mask)).astype(np.float32)
    result = sitk.GetImageFromArray(signed)
    result.CopyInformation(mask)
    return result


def _noise_level(array):
    """Donoho's estimate of the image noise's standard deviation (see the module's docstring)."""
    diffs = np.diff(array.astype(np.float64), axis=-1).ravel()
    return float(np.median(np.abs(diffs - np.median(diffs))) / 0.6745 / np.sqrt(2.0))


def _rigid_transform(image, mask, rng, settings):
    """A rotation about the slice normal through the ROI's centroid and a sub-voxel translation."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing())
    shift = rng.uniform(-1, 1, 3) * settings["translation_voxels"] * spacing
    angle = np.deg2rad(rng.uniform(-1, 1) * settings["rotation_degrees"])
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    transform = sitk.VersorRigid3DTransform()
    transform.SetCenter(stats.GetCentroid(1))
    transform.SetRotation(tuple(direction[:, 2]), float(angle))
    transform.SetTranslation(tuple(direction @ shift))
    return transform


def perturb_case(image, mask, seed, settings=PERTURBATION_SETTINGS):
    """One perturbation of an (image, ROI) pair; both keep the image's grid.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The image and its binary ROI, on the same grid (as :func:`p53radiomics.io.load_case` gives).
    seed : int
        Seed of the draws.
    settings : mapping, default=PERTURBATION_SETTINGS
        ``grow_mm``, ``translation_voxels``, ``rotation_degrees``, ``noise``.

    Returns
    -------
    image, mask : SimpleITK.Image
        The image (``float32``) and the ROI (``uint8``, 0/1). The ROI may be empty if the contour
        was shrunk away: the caller refuses it.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> from p53radiomics.radiomics._robustness import perturb_case
    >>> image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(8, 16, 16)))
    >>> mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    >>> mask[4:12, 4:12, 2:6] = 1
    >>> moved_image, moved_mask = perturb_case(image, mask, seed=1)
    >>> moved_mask.GetSize() == mask.GetSize(), int(sitk.GetArrayFromImage(moved_mask).max())
    (True, 1)
    """
    rng = np.random.default_rng(seed)
    grow = rng.choice([-1.0, 1.0]) * settings["grow_mm"]
    transform = _rigid_transform(image, mask, rng, settings)
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(image)
    resampler.SetTransform(transform)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetUseNearestNeighborExtrapolator(True)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    moved = resampler.Execute(sitk.Cast(image, sitk.sitkFloat32))
    distance = sitk.GetArrayFromImage(resampler.Execute(_signed_distance(mask)))
    array = sitk.GetArrayFromImage(moved)
    if settings["noise"]:
        array = array + rng.normal(
            0.0, _noise_level(sitk.GetArrayViewFromImage(image)), array.shape
        )
    out_image = sitk.GetImageFromArray(array.astype(np.float32))
    out_image.CopyInformation(image)
    out_mask = sitk.GetImageFromArray((distance <= grow).astype(np.uint8))
    out_mask.CopyInformation(image)
    return out_image, out_mask


def extract_perturbed(case, patient_id, phase, params, verbose, seed, settings):
    """Worker: read one (patient, phase), perturb it (seed `seed`) and extract its features.

    Returns what :func:`~p53radiomics.radiomics._worker.extract_phase` returns:
    ``("ok", features, diagnostics, messages)`` or ``("error", CohortError)``.
    """
    mask_column = f"{phase}_mask"  # the caller names the real column in its errors
    try:
        with one_sitk_thread():
            image, mask = load_case(case, patient_id, phases=(phase,))[phase]
            image, mask = perturb_case(image, mask, seed, settings)
    except CohortError as exc:
        return ("error", exc)
    if not sitk.GetArrayViewFromImage(mask).any():
        return (
            "error",
            CohortError(
                f"the ROI of phase {phase!r} is empty once shrunk by up to "
                f"{settings['grow_mm']} mm (perturbation seed {seed}): too thin to perturb",
                patient_id=patient_id,
                column=mask_column,
            ),
        )
    one_row = pd.DataFrame({phase: [image], mask_column: [mask]}, index=case.index)
    return extract_phase(one_row, patient_id, phase, params, verbose)


# --------------------------------------------------------------------------------------------------
# Sources, ICC and selection
# --------------------------------------------------------------------------------------------------
def robustness_sources(X, phases, reference, robustness_masks):
    """What the ICC compares the `reference` masks with: mask sets, or ``"perturb"``.

    Returns ``("perturb", None)`` or ``("repeated", {set or None: patients})``, each set with the
    patients of `X` that have it (None: the primary masks), every one with at least 2 patients.
    """
    others = [s for s in [None, *mask_sets(X.columns, phases)] if s != reference]
    if robustness_masks == "perturb":
        return "perturb", None
    if isinstance(robustness_masks, str):  # "auto": the table's repeated sets, else perturbations
        chosen = [s for s in others if s is not None] if reference is None else others
        if not chosen:
            return "perturb", None
    else:
        chosen = list(robustness_masks)
        if not chosen or len(set(chosen)) != len(chosen) or any(s not in others for s in chosen):
            raise ValueError(
                f"robustness_masks={robustness_masks!r}: each must be a distinct mask set of the "
                f"table other than mask_set={reference!r}; the table's are "
                f"{[s for s in others if s is not None]}"
            )
    sources = {}
    for name in chosen:
        patients = X.index if name is None else mask_set_patients(X, name, phases)
        if len(patients) < 2:
            raise ValueError(
                f"mask set {name!r}: {len(patients)} training patient(s) have it "
                f"({list(patients)}); the ICC of the robustness filter needs at least 2. Add "
                "repeated ROIs, or set robustness_masks='perturb'"
            )
        sources[name] = patients
    return "repeated", sources


def robustness_icc(primary, others, kind):
    """The ICC of every feature: one column per comparison, and ``icc``, their minimum.

    `primary` holds the reference masks' features; `others` maps a label to a feature table (a
    mask set's, or a perturbation's). With ``kind="ICC1"`` (perturbations) all tables form one
    comparison, ``"perturbation"``; otherwise each other table is compared with `primary` on the
    patients both have. Rows with a NaN (a case skipped under ``on_error="skip"``) are left out.
    """
    tables = {PRIMARY_LABEL: primary.dropna(), **{k: v.dropna() for k, v in others.items()}}
    if kind == PERTURBED_KIND:
        comparisons = {"perturbation": tuple(tables)}
    else:
        comparisons = {label: (PRIMARY_LABEL, label) for label in others}
    table = reproducibility_table(tables, comparisons, kind=kind)
    wide = (
        table["icc"]
        .unstack(level="comparison")
        .reindex(index=primary.columns, columns=list(comparisons))
    )
    wide.columns = [str(c) for c in wide.columns]
    wide.columns.name = None
    wide["icc"] = wide.min(axis=1, skipna=False)
    wide.index.name = "feature"
    return wide


def robust_features(icc_table, threshold):
    """The features whose ICC reaches `threshold`; a ValueError if there is none."""
    kept = icc_table.index[(icc_table["icc"] >= threshold).to_numpy()]
    if len(kept):
        return np.asarray(kept, dtype=object)
    finite = icc_table["icc"].dropna()
    best = (
        f"the best is {finite.max():.3f} ({finite.idxmax()!r})"
        if len(finite)
        else "every feature is constant across the patients (no ICC)"
    )
    raise ValueError(
        f"no feature has an ICC >= robustness_threshold={threshold} over the training patients; "
        f"{best}. Lower robustness_threshold (or set it to None to keep every feature)"
    )


# --------------------------------------------------------------------------------------------------
# The filter's part of RadiomicsExtractor
# --------------------------------------------------------------------------------------------------
class RobustnessFilterMixin:
    """``fit``, ``fit_transform`` and tags of :class:`RadiomicsExtractor` with its robustness filter.

    Left of :class:`~p53radiomics.utils._cohort_step.CohortStep`; the extractor supplies
    ``_extract(X, mask_set)`` (one feature table) and ``_extract_perturbed(X, entropy)`` (one per
    perturbation), and the parameters ``robustness_threshold``, ``robustness_masks``,
    ``n_perturbations``, ``random_state``, ``mask_set``, ``phases``, ``params``, ``passthrough``.
    """

    def fit(self, X, y=None):
        """Check the parameters and the cohort table; with ``robustness_threshold``, fit the filter.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table (the training patients).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The step itself.
        """
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``; with the filter, the training cases are extracted once.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table.
        y : None
            Ignored.

        Returns
        -------
        features : pandas.DataFrame
            As ``transform``.
        """
        if self.robustness_threshold is None:
            return super().fit_transform(X, y)
        return self._keep_robust(self._fit(X))

    def _fit(self, X):
        """Fit; with the filter, return the training features it extracted (else None)."""
        super().fit(X)
        for name in FILTER_ATTRIBUTES:
            self.__dict__.pop(name, None)  # a refit without the filter leaves no stale state
        if self.robustness_threshold is None:
            return None
        features = self._extract(X, self.mask_set)
        kept = {a: self.__dict__[a] for a in CASE_RECORDS if a in self.__dict__}
        try:
            fitted = self._fit_filter(X, features[self._feature_columns()])
        finally:
            self.__dict__.update(kept)  # the attributes of the primary extraction
        self.__dict__.update(fitted)
        return features

    def _fit_filter(self, X, primary):
        """The fitted attributes of the filter, from repeated or perturbed extractions of `X`."""
        source, sets = robustness_sources(X, self.phases, self.mask_set, self.robustness_masks)
        fitted = {"robustness_source_": source}
        others, hits, misses = {}, 0, 0
        if source == "perturb":
            entropy = fitted["perturbation_entropy_"] = perturbation_entropy(self.random_state)
            for number, table in enumerate(self._extract_perturbed(X, entropy)):
                others[f"perturbation {number + 1}"] = table
            hits, misses = self.cache_hits_, self.cache_misses_
        for name, patients in (sets or {}).items():
            table = self._extract(X.loc[patients], name)[self._feature_columns()]
            others["primary masks" if name is None else name] = table
            hits, misses = hits + self.cache_hits_, misses + self.cache_misses_
        kind = PERTURBED_KIND if source == "perturb" else REPEATED_KIND
        icc = robustness_icc(primary, others, kind)
        fitted["robust_features_"] = robust_features(icc, self.robustness_threshold)
        fitted["icc_"] = icc
        fitted["robustness_cache_hits_"], fitted["robustness_cache_misses_"] = hits, misses
        return fitted

    def _feature_columns(self):
        names = feature_names(self.params)
        return [f"{phase}_{name}" for phase in self.phases for name in names]

    def _keep_robust(self, features):
        return features[list(self.robust_features_) + list(self.passthrough)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = self.robustness_threshold is not None
        return tags
