"""RadiomicsExtractor: PyRadiomics on the tumour ROI of each phase, in parallel and cached."""

import os
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ..cache import CaseCache
from ..exceptions import CohortError
from ..io import DEFAULT_PHASES, check_mask_set, mask_set_patients, phase_columns, validate_cohort
from ..utils._cohort_step import CohortStep
from ..utils._sklearn import Interval, StrOptions
from . import _robustness as robustness
from ._params import feature_names, load_params, resolve_label, split_label
from ._regions import check_regions, extract_region, region_columns, region_prefix
from ._worker import (
    check_passthrough,
    check_result,
    diagnostics_frame,
    extract_phase,
    skipped_extractions,
)

__all__ = ["RadiomicsExtractor"]

#: Format version of the cache entries; raise it when an entry's content changes meaning.
_CACHE_VERSION = 1
_CACHE_NAMESPACE = "radiomics"


# --------------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------------
class RadiomicsExtractor(robustness.RobustnessFilterMixin, CohortStep):
    """Extract PyRadiomics features from the tumour ROI of each phase of a cohort table.

    A stateless transformer: ``fit`` learns nothing, and ``transform`` runs PyRadiomics on every
    patient and phase, reading the image and mask cells through :mod:`p53radiomics.io` (paths or
    in-memory :class:`SimpleITK.Image`). With `cache_dir`, a case already extracted with the same
    parameters is read back instead of extracted again, so cross-validation and grid search extract
    each case once.

    Parameters
    ----------
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases to extract; each names an image column of the cohort table, whose ROI is the column
        ``f"{phase}_mask"``, else ``"mask"``.
    params : dict, str, os.PathLike or None, default=None
        PyRadiomics parameters: a dict with the keys ``imageType``, ``featureClass`` and ``setting``,
        or the path of a PyRadiomics YAML parameter file. Validated with PyRadiomics's schema when
        the step is used (a clear :class:`ValueError` lists every problem). ``None`` is the study's
        set, shipped as ``p53radiomics/radiomics/study.yaml``: original, wavelet and LoG images,
        shape, first-order and texture classes, 1,223 features per phase, with a fixed bin count
        that suits the z-scored intensities of :class:`~p53radiomics.N4Resampler` (see Notes).
    cache_dir : str, os.PathLike or None, default=None
        Folder of the per-case cache (see :class:`p53radiomics.cache.CaseCache`), which may be shared
        with other steps and processes. An entry is keyed by the contents of the image and mask
        (never their paths), the parameters and the PyRadiomics version. ``None`` caches nothing.
    n_jobs : int or None, default=None
        Extractions run in parallel over (patient, phase) pairs, through joblib (loky processes by
        default). ``None`` means 1 unless in a :func:`joblib.parallel_config` context; ``-1`` uses
        every core. In a ``parallel_config(backend="dask")`` context the extractions run on the
        ``dask.distributed`` cluster's workers (see the user guide's page on scaling out).
        SimpleITK runs on one thread during an extraction, in the workers and in the calling
        process alike, so the values do not depend on `n_jobs`, the backend or the machine.
    on_error : {"raise", "skip"}, default="raise"
        What a failed case does: ``"raise"`` raises :class:`~p53radiomics.CohortError` naming the
        patient and the phase (an unreadable or missing file, an empty mask, a mask of another
        geometry, several labels, an ROI PyRadiomics rejects, a feature PyRadiomics could not
        compute). ``"skip"`` goes on: that patient's features of that phase are NaN, a
        :class:`~p53radiomics.SkippedCaseWarning` lists the failures, and ``skipped_`` records them.
    verbose : int, default=0
        0 is silent; 1 shows a progress bar over the extractions; 2 also lets PyRadiomics's warnings
        through (its own stderr handler and the root logger); 3 its progress messages too.
    passthrough : sequence of str, default=()
        Cohort columns copied unchanged into the output after the features, e.g. ``("scanner",)``
        for a :class:`~p53radiomics.ComBatHarmonizer` downstream. A missing column raises
        :class:`~p53radiomics.CohortError` naming it, in ``fit`` and ``transform``.
    mask_set : str or None, default=None
        The ROIs to extract from: ``None``, the primary masks; a name such as ``"reader2"``, that
        set of repeated masks (columns ``f"{phase}_mask_reader2"``, else ``"mask_reader2"``; see
        :func:`~p53radiomics.io.phase_columns`). Every patient transformed must have the set:
        under ``on_error="raise"`` a patient without it raises :class:`~p53radiomics.CohortError`
        (select the patients first, ``X.loc[mask_set_patients(X, "reader2")]``, see
        :func:`~p53radiomics.io.mask_set_patients`); under ``"skip"`` its features are NaN and it
        is listed in ``skipped_``. A transformer returns one row per input row, so it neither
        drops such patients silently nor fills them with another set's features.
    label : int, dict or None, default=None
        The label of multi-label masks to extract from (an int for every phase, or a dict phase
        -> int): its voxels are the ROI PyRadiomics gets, as a binary mask. ``None``: each mask
        holds one label, or PyRadiomics's ``setting: label`` in `params` where it is not 1 (the
        two must then agree, else a :class:`ValueError`). A mask without the label raises
        :class:`~p53radiomics.CohortError` listing the labels it holds. Part of the cache key
        only when set.
    regions : list or tuple of str, default=("tumour",)
        Where each phase's features come from: ``"tumour"``, the ROI; ``f"ring{k}mm"`` (e.g.
        ``"ring5mm"``, ``"ring2.5mm"``), the peritumoral ring of ``k`` mm around it, minus the
        ROI, on the image's grid (see :mod:`p53radiomics.radiomics._regions`), whose columns are
        ``f"{phase}_ring{k}mm_{name}"``. Cached like the tumour's (the ring is part of the key).
        Not combined with the robustness filter yet (a :class:`ValueError`).
    robustness_threshold : float in [0, 1] or None, default=None
        The robustness filter: ``None`` keeps every feature (the step is then stateless, as
        without the filter). A number, e.g. 0.75 ("good" reliability, Koo & Li 2016), makes
        ``fit`` compute each feature's ICC over the training patients (see Notes) and keep those
        with ICC >= the threshold: ``transform`` and :meth:`get_feature_names_out` then give only
        those (and need ``fit``). If no feature passes, ``fit`` raises a :class:`ValueError` naming
        the best ICC found: lower the threshold.
    robustness_masks : "auto", "perturb" or list of str, default="auto"
        Where the filter's ICC comes from: ``"auto"``, the repeated mask sets of the training table
        (all of them) where it has any, else perturbations; ``"perturb"``, perturbations of each
        training ROI; a list, those mask sets. A set held by fewer than 2 training patients raises
        a :class:`ValueError` (silently switching to perturbations would change the method
        between folds).
    n_perturbations : int, default=3
        Perturbed extractions per training patient and phase (with ``robustness_masks`` giving
        perturbations).
    random_state : int, RandomState instance or None, default=None
        Seeds the perturbations. With an int each patient gets the same perturbations in every fit
        (every fold of a cross-validation), so a second fit reads them from the cache.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Columns of the table seen in ``fit`` (only after ``fit``).
    n_features_in_ : int
        Number of those columns (only after ``fit``).
    skipped_ : pandas.DataFrame
        Set by ``transform``: one row per (patient, phase) its last call left out under
        ``on_error="skip"`` (index: patient id; columns ``phase``, ``column``, the cell at fault,
        and ``reason``), in table order. Empty when none was. Failed cases are not cached: they
        are tried again on the next call.
    diagnostics_ : pandas.DataFrame
        Set by ``transform``: PyRadiomics's diagnostics (versions, settings, image and mask hashes,
        ROI voxel count, bounding box...), one row per patient, columns
        ``f"{phase}_{diagnostics name}"``, object dtype. Empty columns when the parameters set
        ``additionalInfo: false``.
    cache_hits_ : int
        Set by ``transform``: (patient, phase) pairs its last call read from the cache (0 without
        `cache_dir`).
    cache_misses_ : int
        Set by ``transform``: pairs its last call gave PyRadiomics (and wrote to the cache, if any,
        when they succeeded).
    icc_ : pandas.DataFrame
        With the robustness filter, set by ``fit``: one row per feature (index ``feature``), a
        column per comparison (each repeated mask set against the primary masks, or
        ``"perturbation"``) and ``icc``, their minimum, which the threshold is applied to. NaN for
        a feature constant across the training patients (no ICC): it is not kept.
    robust_features_ : ndarray of str
        With the robustness filter, set by ``fit``: the features kept, in output order.
    robustness_source_ : str
        With the robustness filter, set by ``fit``: ``"repeated"`` or ``"perturb"``.
    perturbation_entropy_ : int
        With perturbations, set by ``fit``: the integer every perturbation's seed derives from
        (`random_state`, or the entropy drawn for ``random_state=None``).
    robustness_cache_hits_, robustness_cache_misses_ : int
        With the robustness filter, set by ``fit``: the repeated or perturbed extractions its last
        call read from the cache and gave PyRadiomics (``cache_hits_`` and ``cache_misses_`` count
        the primary extraction).

    See Also
    --------
    p53radiomics.radiomics.load_params : Load and validate a parameter set.
    p53radiomics.radiomics.feature_names : The names a parameter set gives, without extracting.

    Notes
    -----
    Columns are ``f"{phase}_{name}"`` with PyRadiomics's names (``"ap_original_firstorder_Mean"``,
    ``"pvp_wavelet-LLH_glcm_Idmn"``), phase by phase, each in PyRadiomics's order; diagnostics are
    left out of the table. :meth:`get_feature_names_out` knows them before any case is read: they
    follow from the enabled image types (and their settings: LoG sigmas, wavelet level, force2D)
    and the enabled feature classes (see :func:`~p53radiomics.radiomics.feature_names`).

    Grey levels: on z-scored intensities PyRadiomics's default ``binWidth: 25`` leaves one to three
    grey levels in an ROI, and every texture feature is then meaningless. The study's set uses
    ``binCount: 32``, so every ROI and every filtered image is discretised into up to 32 levels
    whatever its unit, and leaves the normalisation to :class:`~p53radiomics.N4Resampler`
    (``normalize: false``).

    A failure is never a silent NaN: PyRadiomics itself logs an error and returns NaN when a
    feature fails; here such a case is raised, or skipped and reported. Under ``on_error="skip"``
    the skipped rows stay in the output as NaN instead of being dropped, because a transformer
    inside a :class:`~sklearn.pipeline.Pipeline` cannot drop rows (``y`` would no longer be
    aligned): put a :class:`~sklearn.impute.SimpleImputer` after this step, or drop the patients
    listed in ``skipped_`` before fitting.

    The robustness filter is fitted on the training table only: in a cross-validation the
    validation patients' repeated ROIs never decide which features are kept. Each repeated mask
    set is compared with the primary masks over the training patients that have it, with
    ICC(A,1) (``"ICC2"`` of :func:`~p53radiomics.metrics.icc`), which Koo & Li recommend for
    readers and sessions; a feature's ICC is its lowest over the sets. Perturbations (contour
    grown or shrunk by up to 1 mm, sub-voxel translation, small rotation, noise: see
    :mod:`p53radiomics.radiomics._robustness`) are compared with the primary ROI with ICC(1,1)
    (``"ICC1"``), as Zwanenburg et al. (2019) do, being drawn anew for each patient. Repeated and
    perturbed extractions are cached like primary ones (a perturbed one under a key holding its
    seed and settings); training rows that a skipped case left NaN are left out of the ICC.

    Examples
    --------
    >>> import numpy as np, pandas as pd, SimpleITK as sitk
    >>> from p53radiomics.radiomics import RadiomicsExtractor
    >>> image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(8, 16, 16)))
    >>> mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    >>> mask[4:12, 4:12, 2:6] = 1
    >>> X = pd.DataFrame({"ap": [image], "mask": [mask], "age": [61]}, index=["P001"])
    >>> params = {"featureClass": {"firstorder": ["Mean", "Entropy"]}, "setting": {"binCount": 16}}
    >>> features = RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)
    >>> features.columns.tolist()
    ['ap_original_firstorder_Mean', 'ap_original_firstorder_Entropy']
    >>> features.index.tolist(), features.dtypes.unique().tolist()
    (['P001'], [dtype('float64')])
    >>> RadiomicsExtractor().get_feature_names_out().shape  # the study's set over 3 phases
    (3669,)
    """

    _parameter_constraints = {
        "phases": [list, tuple],
        "params": [None, dict, str, os.PathLike],
        "cache_dir": [None, str, os.PathLike],
        "passthrough": [list, tuple],
        "mask_set": [None, str],
        "label": [Integral, dict, None],
        "regions": [list, tuple],
        "robustness_threshold": [None, Interval(Real, 0, 1, closed="both")],
        "robustness_masks": [StrOptions({"auto", "perturb"}), list, tuple],
        "n_perturbations": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        **CohortStep._parameter_constraints,  # n_jobs, on_error, verbose
    }
    _fixed_output = False  # a table of float features: scikit-learn's set_output applies
    _progress = ("radiomics", "case")
    _verb = "extract"

    def __init__(
        self,
        phases=DEFAULT_PHASES,
        params=None,
        *,
        cache_dir=None,
        n_jobs=None,
        on_error="raise",
        verbose=0,
        passthrough=(),
        mask_set=None,
        label=None,
        regions=("tumour",),
        robustness_threshold=None,
        robustness_masks="auto",
        n_perturbations=3,
        random_state=None,
    ):
        self.phases = phases
        self.params = params
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.verbose = verbose
        self.passthrough = passthrough
        self.mask_set = mask_set
        self.label = label
        self.regions = regions
        self.robustness_threshold = robustness_threshold
        self.robustness_masks = robustness_masks
        self.n_perturbations = n_perturbations
        self.random_state = random_state

    def _check_settings(self):
        """``(params, {phase: label} or None, [(region, ring_mm)])``, checked."""
        check_mask_set(self.mask_set)
        regions = check_regions(self.regions)
        if self.robustness_threshold is not None and regions != [("tumour", None)]:
            raise ValueError(
                "regions other than ('tumour',) do not combine with the robustness filter"
            )
        params, labels = resolve_label(self.params, self.label, tuple(self.phases))
        return load_params(params), labels, regions

    def _feature_columns(self):  # the robustness filter's (tumour only); params' label allowed
        names = feature_names(split_label(self.params)[0])
        return [f"{phase}_{name}" for phase in self.phases for name in names]

    def _check_table(self, X):
        validate_cohort(X, self.phases, check_images=False)
        phase_columns(X, self.phases, check_mask_set(self.mask_set))
        check_passthrough(self.passthrough, X)

    def transform(self, X):
        """Extract the features of every patient and phase.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table: one row per patient (unique ids in the index), an image column per phase
            and its mask column (``f"{phase}_mask"`` or ``"mask"``). Other columns are ignored.

        Returns
        -------
        features : pandas.DataFrame of shape (n_patients, n_phases * n_features + n_passthrough)
            float64 features, indexed like `X`, columns :meth:`get_feature_names_out`. NaN only in
            the (patient, phase) blocks that ``on_error="skip"`` left out (see ``skipped_``).
            The `passthrough` columns follow, as they are in `X`.

        Raises
        ------
        CohortError
            Under ``on_error="raise"``, on the first case that fails, naming its patient and phase.
        NotFittedError
            With the robustness filter, before ``fit``.
        """
        if self.robustness_threshold is None:
            return self._extract(X, self.mask_set)
        check_is_fitted(self, "robust_features_")
        return self._keep_robust(self._extract(X, self.mask_set))

    def _extract(self, X, mask_set):
        """The features of every patient and phase of `X`, from the masks of `mask_set`."""
        return self._extract_tables(X, mask_set, None)[0]

    def _extract_perturbed(self, X, entropy):
        """One feature table (without passthrough) per perturbation of the `mask_set` ROIs."""
        return [t[self._feature_columns()] for t in self._extract_tables(X, self.mask_set, entropy)]

    def _extract_tables(self, X, mask_set, entropy):
        """The feature tables of `X`: one, or one per perturbation when `entropy` is given."""
        params, labels, regions = self._start_transform(X)
        columns = phase_columns(X, self.phases, mask_set)
        if mask_set is not None and self.on_error == "raise":  # under "skip": skipped cases
            mask_set_patients(X, mask_set, self.phases, require_all=True)
        names = feature_names(params)
        phases = [c.phase for c in columns]
        columns_out = region_columns(phases, regions, names)
        passthrough = check_passthrough(self.passthrough, X, columns_out)
        numbers = [()] if entropy is None else [(i,) for i in range(self.n_perturbations)]
        context = {
            "index": X.index,
            "columns": columns,
            "params": params,
            "names": names,
            "cache_params": {"params": params, "pyradiomics": _pyradiomics_version()},
            "entropy": entropy,
            "labels": labels,
            "regions": regions,
        }
        n_blocks = len(columns) * len(regions)  # a block: one phase's region, j * n_regions + r
        cases = [(r, b, *n) for n in numbers for r in range(len(X)) for b in range(n_blocks)]
        # the worker of this call (see _case_worker)
        self._perturbing = entropy is not None
        self._by_region = labels is not None or regions != [("tumour", None)]
        try:
            results = self._run_cases(X, cases, context)
        finally:
            del self._perturbing, self._by_region

        values = {n: np.full((len(X), n_blocks * len(names)), np.nan) for n in numbers}
        diagnostics = {}  # (phase index, name) -> {row: value}
        skipped = []  # (row, phase, column, reason), in the table's order
        # in the order of `results` (the cache's hits, then the extractions): that of the diagnostics
        for (row, b, *number), result in results.items():
            j, prefix = b // len(regions), region_prefix(regions[b % len(regions)][0])
            if isinstance(result, CohortError):
                skipped.append((row, phases[j], result.column, result.reason))
                continue
            features, diag = result
            values[tuple(number)][row, b * len(names) : (b + 1) * len(names)] = [
                features[n] for n in names
            ]
            for name, value in diag.items():
                diagnostics.setdefault((j, prefix + name), {})[row] = value
        self.diagnostics_ = diagnostics_frame(diagnostics, X.index, phases)
        self._record_skipped(*skipped_extractions(X, skipped, len(cases)), stacklevel=5)
        tables = []
        for number in numbers:
            features = pd.DataFrame(values[number], index=X.index.copy(), columns=columns_out)
            if passthrough:
                kept = X[passthrough].set_axis(features.index, axis=0)
                features = pd.concat([features, kept], axis=1)
            tables.append(features)
        return tables

    # The hooks of CohortStep's case loop: a case is (row, phase index), its context a dict.
    def _open_cache(self):
        if self.cache_dir is None:
            return None
        return CaseCache(self.cache_dir, _CACHE_NAMESPACE, _CACHE_VERSION)

    def _case_key(self, X, case, cache, context, memo):
        """The cache key of a case, or None if a cell cannot be hashed.

        A cell that cannot be hashed (a missing file, an empty cell) is extracted, and so reported
        by :mod:`p53radiomics.io` with its patient id and column.
        """
        row, b, *number = case
        j, ring_mm = _block(context, b)
        _, image_col, mask_col = context["columns"][j]
        params = context["cache_params"]
        if context["labels"] is not None:  # only when set: the keys without a label are kept
            params = {**params, "label": context["labels"][context["columns"][j].phase]}
        if ring_mm is not None:
            params = {**params, "ring_mm": ring_mm}
        if number:  # a perturbation: its seed and settings are part of the key
            perturbation = {"seed": _seed(context, row, number), **robustness.PERTURBATION_SETTINGS}
            params = {**params, "perturbation": perturbation}
        try:
            return cache.key(
                *(
                    self._cell_fingerprint(X.iat[row, X.columns.get_loc(c)], X.index[row], c, memo)
                    for c in (image_col, mask_col)
                ),
                params=params,
            )
        except Exception:
            return None

    def _log_cache_use(self, log, cache, hits, n_cases):
        if hits:  # whatever the verbosity
            log.info("RadiomicsExtractor: %d of %d extractions read from the cache", hits, n_cases)

    def _cached_result(self, cache, key):
        entry = cache.load(key)
        return None if entry is None else (entry["features"], entry["diagnostics"])

    def _case_worker(self):
        if self.__dict__.get("_by_region"):
            return extract_region
        return robustness.extract_perturbed if self.__dict__.get("_perturbing") else extract_phase

    def _case_args(self, X, case, key, cache, context):
        row, b, *number = case
        j, ring_mm = _block(context, b)
        phase, image_col, mask_col = context["columns"][j]
        # A repeated set's mask goes to the worker as the phase's own mask column, which
        # load_case reads; its errors are given the real column back in _case_result.
        name = mask_col if mask_col in ("mask", f"{phase}_mask") else f"{phase}_mask"
        cells = {
            image_col: [X.iat[row, X.columns.get_loc(image_col)]],
            name: [X.iat[row, X.columns.get_loc(mask_col)]],
        }
        one_row = pd.DataFrame(cells, index=X.index[row : row + 1])
        args = (one_row, X.index[row], phase, context["params"], int(self.verbose))
        if self.__dict__.get("_by_region"):
            labels = context["labels"]
            args += (None if labels is None else labels[phase], ring_mm)
        if number:
            args += (_seed(context, row, number), dict(robustness.PERTURBATION_SETTINGS))
        return args

    def _case_result(self, case, key, outcome, cache, context):
        row, j = case[0], _block(context, case[1])[0]
        if outcome[0] == "error":
            error, mask_col = outcome[1], context["columns"][j].mask
            if error.column in ("mask", f"{context['columns'][j].phase}_mask"):
                error = CohortError(error.reason, patient_id=error.patient_id, column=mask_col)
            raise error
        _, features, diagnostics, messages = outcome
        patient_id, phase = context["index"][row], context["columns"][j].phase
        check_result(features, context["names"], messages, patient_id, phase)
        if key is not None:
            cache.save(key, {"features": features, "diagnostics": diagnostics})
        return features, diagnostics

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns, known from the parameters before any case is extracted.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored: the output names depend only on `phases` and `params`.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``f"{phase}_{name}"`` for each phase, then each PyRadiomics feature name in
            PyRadiomics's order (see :func:`~p53radiomics.radiomics.feature_names`); then the
            `passthrough` columns.
        """
        phases = self.phases
        out = region_columns(
            phases, check_regions(self.regions), feature_names(split_label(self.params)[0])
        )
        if self.robustness_threshold is not None:
            check_is_fitted(self, "robust_features_")
            return np.asarray(list(self.robust_features_) + list(self.passthrough), dtype=object)
        return np.asarray(out + check_passthrough(self.passthrough, None, out), dtype=object)


def _pyradiomics_version():
    import radiomics

    return radiomics.__version__


def _block(context, block):
    """``(phase index, ring_mm or None)`` of a case's block (see ``_extract_tables``)."""
    j, r = divmod(block, len(context["regions"]))
    return j, context["regions"][r][1]


def _seed(context, row, number):
    return robustness.perturbation_seed(context["entropy"], context["index"][row], number[0])
