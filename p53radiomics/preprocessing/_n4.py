"""N4 bias-field correction, crop around the ROI, resampling and grey-level normalisation."""

import os
from collections import namedtuple
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from .._settings import STUDY_MARGIN_MM, STUDY_N4_ITERATIONS, STUDY_SPACING
from ..cache import CaseCache
from ..exceptions import CohortError
from ..io import (
    DEFAULT_PHASES,
    check_label,
    mask_set_patients,
    mask_sets,
    phase_columns,
)
from ..utils._cohort_step import CohortStep
from ..utils._sitk import one_sitk_thread, sitk_reason
from ..utils._sklearn import Interval, StrOptions
from ._registration import carried_phases, read_item, registration_table
from ._volume import (
    INTERPOLATORS,
    ImageProblem,
    RepeatedMaskOutsideCrop,
    preprocess_volume,
    volume_settings,
)

__all__ = ["N4Resampler"]

#: Format version of the cache entries; raise it when the output of a case changes meaning.
#: 2: the volume shrunk for N4 keeps voxels picked by index (not by ``sitk.Shrink``, whose choice
#: depended on the direction matrix), and every step runs in the voxel frame; non-finite and
#: constant images are refused.
_CACHE_VERSION = 2
_IMAGE_SUFFIX = ".image.nrrd"
_MASK_SUFFIX = ".mask.nrrd"
_REPEATED_SUFFIX = ".mask_{}.nrrd"  # of a repeated mask set's mask (set names are file-safe)

# One (patient, phase) pair to preprocess; `repeated`: ((mask set, column), ...) it has, or ();
# `label`: the label of its masks to keep (None: one label per mask); `carry`: see read_item.
_Item = namedtuple("_Item", "patient_id phase image_column mask_column repeated label carry")


class N4Resampler(CohortStep):
    """N4 bias-field correction, crop around the ROI, resampling and grey-level normalisation.

    The study's preprocessing, per patient and phase:

    1. **N4 bias-field correction**, estimated on the volume shrunk by `shrink_factor` (a mask of the
       body foreground, see Notes, limits the fit) and applied at full resolution: the log
       bias field is evaluated on the original voxel grid and the image divided by its exponential;
    2. **crop** to the ROI's bounding box grown by `margin_mm` on every side (``None`` keeps the whole
       volume), before resampling so that only the voxels kept are interpolated;
    3. **resampling** to `spacing`: linear or cubic B-spline interpolation for the image, nearest
       neighbour for the mask, both onto the same grid, which covers the cropped region;
    4. **grey-level normalisation** (`normalization`), with statistics taken from the body
       foreground of the whole bias-corrected volume (see Notes), not from the crop or the ROI.

    The step learns nothing (``fit`` only checks its parameters); each case is processed on its own.
    Every step works on the voxel array and the spacing: the output voxels do not depend on the
    image's direction cosines or origin (an oblique acquisition gives the same output as the same
    voxels stored axially), and the output keeps the input's direction (see Notes).

    Parameters
    ----------
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases to preprocess; each needs an image column and a mask column (``f"{phase}_mask"``, or
        the shared ``mask``).
    spacing : float or sequence of 3 floats, default=(1.0, 1.0, 1.0)
        Output voxel spacing in mm (x, y, z); a single number for isotropic voxels. ``None`` keeps
        each image's own grid (no resampling).
    shrink_factor : int, default=4
        The bias field is estimated on the volume shrunk by this factor along each axis (capped so
        that an axis keeps at least 2 voxels). ``1`` estimates it at full resolution: on a
        512 x 512 x 72 volume about 50 times slower (23 minutes on 2 cores) for a field that
        correlates 0.9998 with the one estimated at 4 (``benchmarks/bench_preprocessing.py``).
    n_iterations : sequence of int, default=(50, 50, 50, 50)
        Maximum iterations of N4 at each fitting level; its length is the number of levels (the
        B-spline mesh doubles at each one).
    bias_correction : bool, default=True
        Whether to run N4. With ``False`` the other steps run on the image as read.
    normalization : {"zscore", "percentile"} or None, default="zscore"
        ``"zscore"``: subtract the mean and divide by the standard deviation of the reference region
        (Notes). ``"percentile"``: map the reference region's `percentiles` to 0 and 1 (linearly, not
        clipped). ``None``: keep the bias-corrected intensities.
    percentiles : tuple of 2 floats, default=(1.0, 99.0)
        Lower and upper percentile for ``normalization="percentile"``.
    margin_mm : float or None, default=30.0
        Margin around the ROI's bounding box, in mm, kept by the crop (clipped to the volume).
        ``None`` keeps the whole volume, which costs far more memory and time at 1 mm.
    interpolation : {"linear", "bspline"}, default="linear"
        Interpolator used to resample images (masks always use nearest neighbour).
    label : int, dict or None, default=None
        The label of multi-label masks to keep as the ROI (an int for every phase, or a dict
        phase -> int); the output masks are 0/1 (that label as 1), so the later steps need no
        `label`. ``None``: each mask holds one label (a mask with several raises). A mask without
        the label raises :class:`~p53radiomics.CohortError` listing the labels it holds. It
        applies to the repeated masks too, and is part of the cache key (only when set).
    mask_phase : str or None, default=None
        One of `phases`: the one the shared ``mask`` was drawn on, carried from its grid to the
        other phases using it (Notes); a ValueError if no phase uses it. ``None``: used as it is.
    registration : {"rigid"} or None, default=None
        How the shared mask is carried (needs `mask_phase`): ``None`` by physical coordinates,
        ``"rigid"`` through a rigid registration of each phase to `mask_phase` (Notes).
    cache_dir : str, os.PathLike or None, default=None
        Folder of a per-case cache (:class:`p53radiomics.cache.CaseCache`, namespace
        ``"N4Resampler"``). When set, the output cells are paths to NRRD files in it, and a case
        already preprocessed with the same settings (same file contents, whatever their path) is
        read back instead of computed. Several processes may share the folder. The output paths are
        absolute; with a cluster the folder must be on a filesystem every worker reaches by the same
        path. ``None`` keeps the output in memory as :class:`SimpleITK.Image` cells.
    n_jobs : int or None, default=None
        (Patient, phase) pairs processed in parallel, through joblib (loky processes by default).
        ``None`` means 1 unless in a :func:`joblib.parallel_config` context; ``-1`` uses every core.
        In a ``parallel_config(backend="dask")`` context the cases run on the ``dask.distributed``
        cluster's workers (see the user guide's page on scaling out). SimpleITK runs on one thread
        while it processes a case, whatever `n_jobs`: processes scale better than its threads, and
        the output then does not depend on `n_jobs` or the backend (multi-threaded filters sum in
        an order that depends on the number of threads).
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"``: the first bad case raises :class:`~p53radiomics.exceptions.CohortError` naming
        the patient and the column. ``"skip"``: a bad case is warned (:class:`SkippedCaseWarning`),
        recorded in ``skipped_``, and its image and mask cells are set to ``None`` in the output
        (see Notes); the other cases are processed.
    verbose : int, default=0
        ``0`` silent; ``1`` or more shows a progress bar (tqdm) and logs cache use.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Columns of the table seen in ``fit`` (only after ``fit``).
    n_features_in_ : int
        Number of those columns (only after ``fit``).
    skipped_ : pandas.DataFrame
        Set by ``transform``: the cases its last call skipped (index: patient id; columns
        ``column``, the cell at fault, and ``reason``). Empty when none was.
    cache_hits_ : int
        Set by ``transform``: (patient, phase) pairs its last call read from the cache (0 without
        `cache_dir`).
    cache_misses_ : int
        Set by ``transform``: pairs its last call computed (and wrote to the cache, if any).
    registrations_ : pandas.DataFrame
        By ``transform``: each pair it registered (index: patient id), ``phase``, ``reference``,
        ``translation_{x,y,z}_mm``, ``translation_mm``, ``rotation_deg``, ``metric``, ``seconds``...

    See Also
    --------
    LargestSliceCropper : The axial slice with the largest ROI, for the CNN.

    Notes
    -----
    **Output table.** Same index as `X`, every other column kept. Each phase's image column holds
    the preprocessed image (``float32``) and the column ``f"{phase}_mask"`` its mask (``uint8``,
    0/1, on the image's grid); that column is created where the input used the shared ``mask``
    column, and ``mask`` itself is then dropped, since its geometry no longer matches the images.

    **Repeated ROIs.** Each filled cell of a set ``s`` of repeated masks (a second reader's, a
    second session's: ``f"{phase}_mask_{s}"`` or ``f"mask_{s}"``, see
    :func:`~p53radiomics.io.phase_columns`) is cropped and resampled as its phase's primary mask,
    onto the preprocessed image's grid, into ``f"{phase}_mask_{s}"`` (a shared ``f"mask_{s}"`` is
    replaced as ``mask`` is); patients without the set keep empty (``None``) cells. The crop box is
    the *primary* ROI's, so the primary output is the same with or without repeated masks (a box
    grown to hold them would move the resampling grid, and so the primary features); a repeated
    ROI reaching beyond it is not cut but refused, naming its column (raise `margin_mm`). A bad
    repeated mask makes its patient a bad case (under ``"skip"`` every cell of the patient is
    ``None``). The repeated masks' contents are part of the cache key, and cached with the case;
    without them, keys and outputs are those of a table without such columns.

    **One mask for all phases** (``_registration.py``). With `mask_phase` the shared ``mask`` is
    read on that phase's grid and resampled (nearest neighbour) onto each other phase's; with
    ``"rigid"`` through the rigid transform (Euler, centred) registering the phase's image to the
    `mask_phase` image on the ROI's box grown by 30 mm (Mattes mutual information, seeded sampling,
    one thread: deterministic; about 0.3 s a pair). A failed registration, or one moving the ROI
    over 10 mm or rotating it over 5 degrees, is a CohortError. Repeated masks are not carried.

    **Where the normalisation statistics come from.** The reference region is the *body foreground
    of the whole bias-corrected volume*: the voxels above the triangle threshold of the volume's
    histogram (the foot of the air peak: every tissue, dark or bright, is kept; air is left out)
    and above 0, taken on the grid N4 works on: the volume shrunk by `shrink_factor`, which keeps
    every `shrink_factor`-th voxel of the full-resolution corrected volume. N4 is fitted on the
    same voxels. The region does not depend on the
    ROI, on `margin_mm` or on `spacing`, so the same tissue gets the same value whatever the crop,
    and the share of air in the field of view does not shift the statistics. (Otsu's threshold is
    not used: on MR it often splits bright fat from dark parenchyma and would leave the liver out.)
    After ``"zscore"`` one unit is one standard deviation of the body's intensities (fat, organs
    and muscle together), so a single organ or tumour spans only about 1 to 3 units between its
    1st and 99th percentiles (0.9 for the liver of the real abdominal MR of the tests, 1.4 to 3.5
    for tumours of the synthetic cohort). A grey-level discretisation must be sized for that: a
    bin width of about 0.05 (20 to 70 grey levels in those ROIs) or a fixed bin count, never
    PyRadiomics's default ``binWidth: 25``, which puts the whole ROI in one bin.

    **Geometry.** The output grid's axes are the input's (its direction matrix is kept, with the
    origin moved to the crop), and every step runs on a copy of the image whose direction is the
    identity and origin 0 (only the spacing kept); the input's direction and origin are put back
    on the output. So the same voxel array with another direction matrix (an oblique scan, tilted
    by any angle, or a flipped axis) or another origin gives bit-for-bit the same output voxels,
    and so the same radiomics features. The volume N4 is fitted on is subsampled by index, not
    with ``sitk.Shrink``, whose choice of voxels depends on the direction matrix (see
    ``subsample`` in ``p53radiomics/preprocessing/_volume.py``). The axes are not reordered: for an axis order fixed by anatomy
    (the CNN's axial slices), see :class:`LargestSliceCropper`.

    **Skipped cases.** A scikit-learn :class:`~sklearn.pipeline.Pipeline` cannot drop rows (``y``
    would no longer match), so a skipped case keeps its row with ``None`` cells; a later step then
    raises, or skips it too under its own ``on_error="skip"``. For a long batch outside a pipeline,
    drop ``skipped_.index`` from the output (and from ``y``).

    References
    ----------
    Tustison N. J. et al. N4ITK: improved N3 bias correction. IEEE Trans Med Imaging 29(6),
    1310-1320 (2010).

    Examples
    --------
    >>> import numpy as np, pandas as pd, SimpleITK as sitk
    >>> from p53radiomics.preprocessing import N4Resampler
    >>> rng = np.random.default_rng(0)
    >>> image = sitk.GetImageFromArray(rng.uniform(100, 200, size=(8, 16, 16)).astype(np.float32))
    >>> image.SetSpacing((2.0, 2.0, 3.0))
    >>> mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    >>> mask.CopyInformation(image)
    >>> mask[6:10, 6:10, 3:5] = 1
    >>> X = pd.DataFrame({"ap": [image], "mask": [mask], "age": [61]}, index=["P1"])
    >>> step = N4Resampler(phases=("ap",), n_iterations=(5,), margin_mm=4.0)
    >>> Xt = step.fit_transform(X)
    >>> list(Xt.columns)
    ['ap', 'ap_mask', 'age']
    >>> Xt.loc["P1", "ap"].GetSpacing(), Xt.loc["P1", "ap"].GetSize()
    ((1.0, 1.0, 1.0), (16, 16, 18))
    >>> int(sitk.GetArrayFromImage(Xt.loc["P1", "ap_mask"]).sum())
    384
    """

    _parameter_constraints = {
        "phases": ["array-like"],
        "spacing": [Interval(Real, 0, None, closed="neither"), "array-like", None],
        "shrink_factor": [Interval(Integral, 1, None, closed="left")],
        "n_iterations": ["array-like"],
        "bias_correction": ["boolean"],
        "normalization": [StrOptions({"zscore", "percentile"}), None],
        "percentiles": ["array-like"],
        "margin_mm": [Interval(Real, 0, None, closed="left"), None],
        "interpolation": [StrOptions(set(INTERPOLATORS))],
        "label": [Integral, dict, None],
        "mask_phase": [str, None],
        "registration": [StrOptions({"rigid"}), None],
        "cache_dir": [str, os.PathLike, None],
        **CohortStep._parameter_constraints,  # n_jobs, on_error, verbose
    }

    _progress = ("N4Resampler", "image")
    _verb = "compute"

    def __init__(
        self,
        phases=DEFAULT_PHASES,
        *,
        spacing=STUDY_SPACING,
        shrink_factor=4,
        n_iterations=STUDY_N4_ITERATIONS,
        bias_correction=True,
        normalization="zscore",
        percentiles=(1.0, 99.0),
        margin_mm=STUDY_MARGIN_MM,
        interpolation="linear",
        label=None,
        mask_phase=None,
        registration=None,
        cache_dir=None,
        n_jobs=None,
        on_error="raise",
        verbose=0,
    ):
        self.phases = phases
        self.spacing = spacing
        self.shrink_factor = shrink_factor
        self.n_iterations = n_iterations
        self.bias_correction = bias_correction
        self.normalization = normalization
        self.percentiles = percentiles
        self.margin_mm = margin_mm
        self.interpolation = interpolation
        self.label = label
        self.mask_phase = mask_phase
        self.registration = registration
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.verbose = verbose

    # ----------------------------------------------------------------------------------------------
    def _check_settings(self):
        """The parameters that shape a case's output, checked and in a canonical form."""
        names = ("spacing", "bias_correction", "shrink_factor", "n_iterations")
        names += ("normalization", "percentiles", "margin_mm", "interpolation")
        carried_phases(None, self.phases, self.mask_phase, self.registration)
        return volume_settings(**{name: getattr(self, name) for name in names})

    def _output_columns(self, columns, phase_cols, set_cols=None):
        """The output's columns; `set_cols`: ``{mask set: its PhaseColumns}`` (repeated masks)."""
        set_cols = set_cols or {}
        shared_mask_used = any(pc.mask == "mask" for pc in phase_cols)
        phase_of_image = {pc.image: pc.phase for pc in phase_cols}
        out = []
        for column in columns:
            if shared_mask_used and column == "mask":
                continue
            out.append(column)
            if column in phase_of_image and f"{phase_of_image[column]}_mask" not in columns:
                out.append(f"{phase_of_image[column]}_mask")
        for mask_set, cols in set_cols.items():
            # a shared f"mask_{s}" becomes one column per phase, after that phase's last mask column
            if any(pc.mask == f"mask_{mask_set}" for pc in cols):
                out.remove(f"mask_{mask_set}")
            for pc in cols:
                name = f"{pc.phase}_mask_{mask_set}"
                if name not in out:
                    prefix = f"{pc.phase}_mask"
                    last = max(
                        i for i, c in enumerate(out) if c == prefix or c.startswith(prefix + "_")
                    )
                    out.insert(last + 1, name)
        return out

    def _set_columns(self, X):
        """``{mask set: its PhaseColumns}`` for the repeated mask sets of `X` (see Notes)."""
        return {s: phase_columns(X, self.phases, s) for s in mask_sets(X.columns, self.phases)}

    def get_feature_names_out(self, input_features=None):
        """Columns of the output table.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Columns of the input table; ``None`` takes those seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str
            The input columns, the shared ``mask`` column replaced by one ``f"{phase}_mask"`` column
            after each phase's image column, a shared ``f"mask_{s}"`` likewise (see Notes).
        """
        if input_features is None:
            check_is_fitted(self, "feature_names_in_")
            input_features = self.feature_names_in_
        columns = [str(c) for c in input_features]
        table = pd.DataFrame(columns=columns)
        phase_cols = phase_columns(table, self.phases)
        out = self._output_columns(columns, phase_cols, self._set_columns(table))
        return np.asarray(out, dtype=object)

    # ----------------------------------------------------------------------------------------------
    def transform(self, X):
        """Preprocess every case and phase of a cohort table.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table (see :mod:`p53radiomics.io`): image and mask cells are paths or
            :class:`SimpleITK.Image`. It is not modified.

        Returns
        -------
        Xt : pandas.DataFrame
            Same index; each phase's image column and its ``f"{phase}_mask"`` column hold the
            preprocessed image and mask (:class:`SimpleITK.Image`, or the path of a cached NRRD file
            when `cache_dir` is set), and so does each repeated mask's ``f"{phase}_mask_{s}"``
            (``None`` without it); other columns unchanged (see Notes of the class).

        Raises
        ------
        CohortError
            Under ``on_error="raise"``, for the first bad case (missing or unreadable file, empty
            mask, mask with several labels, mask and image of different geometry, an image with
            NaN or infinite voxels or a constant one, failed N4, a repeated mask off its image's
            grid or beyond the crop box), naming the patient and the column.
        """
        settings = self._start_transform(X)
        phase_cols = phase_columns(X, self.phases)
        labels = check_label(self.label, [pc.phase for pc in phase_cols]) or {}
        set_cols = self._set_columns(X)
        has = {s: set(mask_set_patients(X, s, self.phases)) for s in set_cols}
        carry = carried_phases(phase_cols, self.phases, self.mask_phase, self.registration)
        items = {}
        for pid in X.index:
            for j, pc in enumerate(phase_cols):
                repeated = tuple((s, c[j].mask) for s, c in set_cols.items() if pid in has[s])
                items[pid, pc.phase] = _Item(
                    pid, *pc, repeated, labels.get(pc.phase), carry[pc.phase]
                )
        self._sets_of_key = {}  # cache key -> (mask sets, carry) of its entry (_cached_result)
        try:
            results = self._run_cases(X, list(items.values()), settings)
        finally:
            del self._sets_of_key
        self.registrations_ = registration_table(items.values(), results)
        outcomes = ((item.patient_id, results[item]) for item in items.values())  # table order
        self._record_skipped(*self._skipped_patients(X, outcomes, "their cells are None"))
        skipped = set(self.skipped_.index)
        shared = ["mask"] if any(pc.mask == "mask" for pc in phase_cols) else []
        shared += [f"mask_{s}" for s, c in set_cols.items() if f"mask_{s}" in {p.mask for p in c}]
        Xt = X.drop(columns=shared)
        for pc in phase_cols:
            names = [pc.image, f"{pc.phase}_mask", *(f"{pc.phase}_mask_{s}" for s in set_cols)]
            cells = {name: np.empty(len(X), dtype=object) for name in names}
            for i, pid in enumerate(X.index):
                if pid not in skipped:
                    image, mask, repeated, _ = results[items[pid, pc.phase]]
                    cells[pc.image][i], cells[f"{pc.phase}_mask"][i] = image, mask
                    for mask_set, cell in repeated.items():
                        cells[f"{pc.phase}_mask_{mask_set}"][i] = cell
            for name, column in cells.items():
                Xt[name] = pd.Series(column, index=X.index, dtype=object)
        return Xt[self._output_columns(list(X.columns), phase_cols, set_cols)]

    # The hooks of CohortStep's case loop; a case is an _Item, its context the settings.
    def _open_cache(self):
        if self.cache_dir is None:
            return None
        # absolute: the workers (processes, cluster nodes) write to it and return its paths
        return CaseCache(os.path.abspath(self.cache_dir), "N4Resampler", version=_CACHE_VERSION)

    def _case_key(self, X, item, cache, settings, memo):
        pid, sets = item.patient_id, tuple(s for s, _ in item.repeated)
        inputs = [self._cell_fingerprint(X.at[pid, c], pid, c, memo) for c in _item_columns(item)]
        # without repeated masks, a label or a carried mask, the key of a table without them
        extra = {"mask_sets": list(sets)} if sets else {}
        extra.update({} if item.label is None else {"label": item.label})
        extra.update({"carry": list(item.carry)} if item.carry else {})
        key = cache.key(*inputs, params={**settings, **extra} if extra else settings)
        self._sets_of_key[key] = sets, item.carry
        return key

    def _cached_result(self, cache, key):
        image_path = cache.image_path(key, _IMAGE_SUFFIX)
        sets, carry = self._sets_of_key[key]
        suffixes = [_MASK_SUFFIX, *(_REPEATED_SUFFIX.format(s) for s in sets)]
        registered = bool(carry) and carry[1] is not None  # its record is cached too
        missing = image_path is None or not all(cache.path(key, x).exists() for x in suffixes)
        record = None if missing or not registered else cache.load(key)
        if missing or (registered and record is None):
            return None
        repeated = {s: str(cache.path(key, _REPEATED_SUFFIX.format(s))) for s in sets}
        return str(image_path), str(cache.path(key, _MASK_SUFFIX)), repeated, record

    def _case_worker(self):
        return _preprocess_item

    def _case_args(self, X, item, key, cache, settings):
        cache_args = (
            None if cache is None else (str(cache.directory), cache.namespace, cache.version)
        )
        row = X.loc[[item.patient_id], _item_columns(item)]
        return row, item, key, settings, cache_args


def _item_columns(item):  # image, mask, repeated masks, the carried mask's reference image
    return [item.image_column, item.mask_column, *(c for _, c in item.repeated), *item.carry[:1]]


# --------------------------------------------------------------------------------------------------
# One case, one phase (runs in a joblib worker: a process, a thread or a dask worker)
# --------------------------------------------------------------------------------------------------
def _preprocess_item(row, item, key, settings, cache_args):
    """One (patient, phase): ``(image, mask, {set: mask}, registration)`` (or paths), or an error."""
    try:
        with one_sitk_thread():
            image, mask, repeated, record = read_item(row, item)
            image, mask, repeated = preprocess_volume(image, mask, repeated=repeated, **settings)
    except CohortError as exc:
        return exc
    except RuntimeError as exc:  # SimpleITK reports its failures as RuntimeError
        return CohortError(
            f"preprocessing failed: {sitk_reason(exc)}",
            patient_id=item.patient_id,
            column=item.image_column,
        )
    except RepeatedMaskOutsideCrop as exc:
        column = item.repeated[exc.number][1]
        return CohortError(str(exc), patient_id=item.patient_id, column=column)
    except ImageProblem as exc:
        return CohortError(str(exc), patient_id=item.patient_id, column=item.image_column)
    sets = [s for s, _ in item.repeated]
    if cache_args is None:
        return image, mask, dict(zip(sets, repeated, strict=True)), record
    cache = CaseCache(*cache_args)
    if record is not None:
        cache.save(key, record)
    mask_path = cache.save_image(key, mask, _MASK_SUFFIX)
    paths = {
        s: str(cache.save_image(key, m, _REPEATED_SUFFIX.format(s)))
        for s, m in zip(sets, repeated, strict=True)
    }
    # The image is written last: its presence marks a whole entry.
    image_path = cache.save_image(key, image, _IMAGE_SUFFIX)
    return str(image_path), str(mask_path), paths, record
