"""N4 bias-field correction, crop around the ROI, resampling and grey-level normalisation."""

import logging
import math
import os
from collections import namedtuple
from numbers import Integral, Real

import numpy as np
import pandas as pd
import SimpleITK as sitk
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ..cache import CaseCache, fingerprint
from ..exceptions import CohortError
from ..io import DEFAULT_PHASES, check_voxel_values, load_case, phase_columns, read_image
from ..utils._parallel import parallel_map
from ..utils._sitk import one_sitk_thread, sitk_reason
from ._base import Interval, StrOptions, _StatelessCohortTransformer

__all__ = ["N4Resampler"]

logger = logging.getLogger(__name__)

#: Format version of the cache entries; raise it when the output of a case changes meaning.
#: 2: the volume shrunk for N4 keeps voxels picked by index (not by ``sitk.Shrink``, whose choice
#: depended on the direction matrix), and every step runs in the voxel frame; non-finite and
#: constant images are refused.
_CACHE_VERSION = 2
_IMAGE_SUFFIX = ".image.nrrd"
_MASK_SUFFIX = ".mask.nrrd"
_INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}

# One (patient, phase) pair to preprocess.
_Item = namedtuple("_Item", ["patient_id", "phase", "image_column", "mask_column"])


class N4Resampler(_StatelessCohortTransformer):
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

    See Also
    --------
    LargestSliceCropper : The axial slice with the largest ROI, for the CNN.

    Notes
    -----
    **Output table.** Same index as `X`, every other column kept. Each phase's image column holds
    the preprocessed image (``float32``) and the column ``f"{phase}_mask"`` its mask (``uint8``,
    0/1, on the image's grid); that column is created where the input used the shared ``mask``
    column, and ``mask`` itself is then dropped, since its geometry no longer matches the images.

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
    ``_subsample`` in the source). The axes are not reordered: for an axis order fixed by anatomy
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
        "interpolation": [StrOptions(set(_INTERPOLATORS))],
        "cache_dir": [str, os.PathLike, None],
        "n_jobs": [Integral, None],
        "on_error": [StrOptions({"raise", "skip"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        phases=DEFAULT_PHASES,
        *,
        spacing=(1.0, 1.0, 1.0),
        shrink_factor=4,
        n_iterations=(50, 50, 50, 50),
        bias_correction=True,
        normalization="zscore",
        percentiles=(1.0, 99.0),
        margin_mm=30.0,
        interpolation="linear",
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
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.verbose = verbose

    # ----------------------------------------------------------------------------------------------
    def _check_settings(self):
        """The parameters that shape a case's output, checked and in a canonical form."""
        spacing = self.spacing
        if spacing is not None:
            spacing = (
                (float(spacing),) * 3
                if isinstance(spacing, Real)
                else tuple(float(s) for s in spacing)
            )
            if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(
                    f"spacing must be a positive number or 3 positive numbers (x, y, z), got {self.spacing!r}"
                )
        n_iterations = tuple(self.n_iterations)
        if not n_iterations or not all(isinstance(n, Integral) and n >= 1 for n in n_iterations):
            raise ValueError(
                f"n_iterations must be a non-empty sequence of positive integers, got {self.n_iterations!r}"
            )
        percentiles = tuple(float(p) for p in self.percentiles)
        if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise ValueError(
                f"percentiles must be (low, high) with 0 <= low < high <= 100, got {self.percentiles!r}"
            )
        settings = {
            "spacing": spacing,
            "bias_correction": bool(self.bias_correction),
            "shrink_factor": int(self.shrink_factor),
            "n_iterations": tuple(int(n) for n in n_iterations),
            "normalization": self.normalization,
            "percentiles": percentiles,
            "margin_mm": None if self.margin_mm is None else float(self.margin_mm),
            "interpolation": self.interpolation,
        }
        if not settings["bias_correction"]:
            settings["n_iterations"] = None  # irrelevant: keeps equal outputs under one cache key
        if settings["normalization"] != "percentile":
            settings["percentiles"] = None
        return settings

    def _output_columns(self, columns, phase_cols):
        shared_mask_used = any(pc.mask == "mask" for pc in phase_cols)
        phase_of_image = {pc.image: pc.phase for pc in phase_cols}
        out = []
        for column in columns:
            if shared_mask_used and column == "mask":
                continue
            out.append(column)
            if column in phase_of_image and f"{phase_of_image[column]}_mask" not in columns:
                out.append(f"{phase_of_image[column]}_mask")
        return out

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
            after each phase's image column (see Notes of the class).
        """
        if input_features is None:
            check_is_fitted(self, "feature_names_in_")
            input_features = self.feature_names_in_
        columns = [str(c) for c in input_features]
        phase_cols = phase_columns(pd.DataFrame(columns=columns), self.phases)
        return np.asarray(self._output_columns(columns, phase_cols), dtype=object)

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
            when `cache_dir` is set); other columns unchanged (see Notes of the class).

        Raises
        ------
        CohortError
            Under ``on_error="raise"``, for the first bad case (missing or unreadable file, empty
            mask, mask with several labels, mask and image of different geometry, an image with
            NaN or infinite voxels or a constant one, failed N4), naming the patient and the
            column.
        """
        settings = self._start_transform(X)
        phase_cols = phase_columns(X, self.phases)
        cache = (
            None
            if self.cache_dir is None
            # absolute: the workers (processes, cluster nodes) write to it and return its paths
            else CaseCache(os.path.abspath(self.cache_dir), "N4Resampler", version=_CACHE_VERSION)
        )
        items = [_Item(pid, *pc) for pid in X.index for pc in phase_cols]

        results, todo, fingerprints, hits = {}, [], {}, 0
        for item in items:
            if cache is None:
                todo.append((item, None))
                continue
            try:
                key = cache.key(
                    _fingerprint(X, item.patient_id, item.image_column, fingerprints),
                    _fingerprint(X, item.patient_id, item.mask_column, fingerprints),
                    params=settings,
                )
            except CohortError as exc:
                self._fail(exc)
                results[item] = exc
                continue
            image_path = cache.image_path(key, _IMAGE_SUFFIX)
            if image_path is not None and cache.path(key, _MASK_SUFFIX).exists():
                results[item] = (str(image_path), str(cache.path(key, _MASK_SUFFIX)))
                hits += 1
            else:
                todo.append((item, key))

        outputs = self._run(X, todo, settings, cache)
        try:
            for item, out in zip((item for item, _ in todo), outputs, strict=True):
                if isinstance(out, CohortError):
                    self._fail(out)
                results[item] = out
        finally:
            outputs.close()  # after an error: the cases still queued are not run

        self.cache_hits_, self.cache_misses_ = hits, len(todo)
        # one record per call, whatever the verbosity: what a grid search recomputed can be counted
        logger.debug(
            "N4Resampler: %d (case, phase) pairs to compute, %d read from the cache",
            len(todo),
            hits,
        )
        if cache is not None and self.verbose:
            logger.info(
                "N4Resampler: %d of %d (case, phase) pairs read from the cache",
                hits,
                len(items),
            )
        return self._assemble(X, phase_cols, results)

    def _fail(self, error):
        if self.on_error == "raise":
            raise error

    def _run(self, X, todo, settings, cache):
        """Yield the output of each pending (item, key), in order: a pair of images or paths, or an error."""
        if not todo:
            return
        cache_args = (
            None if cache is None else (str(cache.directory), cache.namespace, cache.version)
        )
        outputs = parallel_map(
            _preprocess_item,
            [
                (
                    X.loc[[item.patient_id], [item.image_column, item.mask_column]],
                    item,
                    key,
                    settings,
                    cache_args,
                )
                for item, key in todo
            ],
            n_jobs=self.n_jobs,
        )
        try:
            yield from tqdm(
                outputs, total=len(todo), desc="N4Resampler", unit="image", disable=not self.verbose
            )
        finally:
            if hasattr(outputs, "close"):
                outputs.close()

    def _assemble(self, X, phase_cols, results):
        skipped = {}  # in the table's order; a case's first failing phase is reported
        for pid in X.index:
            for pc in phase_cols:
                out = results[_Item(pid, *pc)]
                if isinstance(out, CohortError) and pid not in skipped:
                    skipped[pid] = (out.column, str(out))
        self._record_skipped(X, skipped, "their cells are None", stacklevel=4)

        Xt = X.drop(columns=["mask"]) if any(pc.mask == "mask" for pc in phase_cols) else X.copy()
        for pc in phase_cols:
            images = np.empty(len(X), dtype=object)
            masks = np.empty(len(X), dtype=object)
            for i, pid in enumerate(X.index):
                out = results[_Item(pid, *pc)]
                if pid not in skipped:
                    images[i], masks[i] = out
            Xt[pc.image] = pd.Series(images, index=X.index, dtype=object)
            Xt[f"{pc.phase}_mask"] = pd.Series(masks, index=X.index, dtype=object)
        return Xt[self._output_columns(list(X.columns), phase_cols)]


# --------------------------------------------------------------------------------------------------
# One case, one phase (runs in a joblib worker: a process, a thread or a dask worker)
# --------------------------------------------------------------------------------------------------
def _fingerprint(X, patient_id, column, memo):
    cell = X.at[patient_id, column]
    memo_key = cell if isinstance(cell, str) else id(cell)  # X holds the cells, so ids stay unique
    if memo_key not in memo:
        try:
            memo[memo_key] = fingerprint(cell)
        except (OSError, TypeError) as exc:
            # read_image raises the error that says what is wrong with the cell (empty, missing...).
            read_image(cell, patient_id=patient_id, column=column)
            raise CohortError(
                f"cannot read {cell!r}: {exc}", patient_id=patient_id, column=column
            ) from exc
    return memo[memo_key]


def _preprocess_item(row, item, key, settings, cache_args):
    """Preprocess one (patient, phase); return (image, mask), their cached paths, or a CohortError."""
    try:
        with one_sitk_thread():
            image, mask = load_case(row, item.patient_id, (item.phase,))[item.phase]
            check_voxel_values(image, patient_id=item.patient_id, column=item.image_column)
            image, mask = _preprocess_volume(image, mask, **settings)
    except CohortError as exc:
        return exc
    except RuntimeError as exc:  # SimpleITK reports its failures as RuntimeError
        return CohortError(
            f"preprocessing failed: {sitk_reason(exc)}",
            patient_id=item.patient_id,
            column=item.image_column,
        )
    except _ImageProblem as exc:
        return CohortError(str(exc), patient_id=item.patient_id, column=item.image_column)
    if cache_args is None:
        return image, mask
    cache = CaseCache(*cache_args)
    mask_path = cache.save_image(key, mask, _MASK_SUFFIX)
    # The image is written last: its presence marks a whole entry.
    image_path = cache.save_image(key, image, _IMAGE_SUFFIX)
    return str(image_path), str(mask_path)


def _preprocess_volume(
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
):
    """The four steps on one image and its mask (a binary ``uint8`` image on the same grid).

    Every step works in the image's own voxel frame (:func:`_voxel_frame`): the output voxels
    depend on the input voxels and spacing only, never on the direction cosines or the origin, and
    the input's direction and origin are put back on the output (:func:`_to_world`).
    """
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    image = _voxel_frame(sitk.Cast(image, sitk.sitkFloat32))
    mask = _voxel_frame(mask)
    # `reference` and `foreground`: the normalisation's statistics, on the shrunk grid.
    if bias_correction:
        log_field, reference, foreground = _estimate_log_bias_field(
            image, shrink_factor, n_iterations
        )
    else:
        reference = _subsample(image, _shrink_factors(image.GetSize(), shrink_factor))
        log_field, foreground = None, _body_foreground(reference)

    region = _roi_region(mask, margin_mm)
    image, mask = _crop(image, region), _crop(mask, region)
    if log_field is not None:
        image = image / sitk.Exp(_crop(log_field, region))

    if spacing is not None:
        image, mask = _resample(image, mask, spacing, _INTERPOLATORS[interpolation])

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
            raise _ImageProblem(
                f"the image is constant in its body foreground: cannot apply {normalization!r} normalization"
            )
        image = sitk.Cast((image - float(center)) / float(scale), sitk.sitkFloat32)
    return _to_world(image, origin, direction), _to_world(mask, origin, direction)


def _voxel_frame(image):
    """`image` with an identity direction and origin 0: the same voxels and spacing, in a new image.

    ITK filters map voxels through physical space (index -> point -> index) wherever they change
    the grid. Rounding in that round trip depends on the direction matrix and the origin, so where a
    result lands exactly between two voxels, the voxel chosen does too (see :func:`_subsample`).
    In this frame every such computation is the same for the same voxels and spacing.
    """
    local = sitk.Image(image)  # SimpleITK copies the buffer before changing it: the input is kept
    local.SetOrigin((0.0,) * image.GetDimension())
    local.SetDirection(np.eye(image.GetDimension()).ravel().tolist())
    return local


def _to_world(image, origin, direction):
    """Put an image computed in a voxel frame (:func:`_voxel_frame`) back at `origin`, `direction`.

    A point ``p`` of the voxel frame is ``origin + direction @ p`` in the input's physical space.
    """
    image.SetOrigin(tuple(float(v) for v in origin + direction @ np.asarray(image.GetOrigin())))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image


def _shrink_factors(size, shrink_factor):
    """Shrink factor per axis, capped so that every axis keeps at least 2 voxels."""
    return [max(1, min(shrink_factor, s // 2)) for s in size]


def _subsample(image, factors):
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
    volume itself, as the normalisation statistics need (see :class:`N4Resampler`, Notes).
    """
    size = image.GetSize()
    start = [f // 2 for f in factors]
    count = [max(1, s // f) for s, f in zip(size, factors, strict=True)]
    stop = [b + f * (n - 1) + 1 for b, f, n in zip(start, factors, count, strict=True)]
    return sitk.Slice(image, start, stop, [int(f) for f in factors])


class _ImageProblem(ValueError):
    """A problem with one image's contents, turned into a CohortError naming its patient and column."""


def _body_foreground(image):
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


def _estimate_log_bias_field(image, shrink_factor=4, n_iterations=(50, 50, 50, 50)):
    """Estimate N4's log bias field on a subsampled copy of `image` and evaluate it on `image`'s grid.

    Parameters
    ----------
    image : SimpleITK.Image
        A ``float32`` 3D image with positive intensities in the body.
    shrink_factor : int, default=4
        See :class:`N4Resampler`.
    n_iterations : sequence of int, default=(50, 50, 50, 50)
        See :class:`N4Resampler`.

    Returns
    -------
    log_field : SimpleITK.Image
        The log bias field on `image`'s full-resolution grid (divide the image by its exponential).
    corrected : SimpleITK.Image
        The full-resolution corrected image subsampled to the shrunk grid (:func:`_subsample`
        keeps every `shrink_factor`-th voxel, so these are exactly voxels of the corrected volume).
    foreground : SimpleITK.Image
        The body foreground N4 was fitted on, on the shrunk grid.
    """
    factors = _shrink_factors(image.GetSize(), shrink_factor)
    shrunk = _subsample(image, factors)
    foreground = _body_foreground(shrunk) & (shrunk > 0)
    if not sitk.GetArrayViewFromImage(foreground).any():
        raise _ImageProblem(
            "no voxel with a positive intensity: N4 needs positive intensities "
            "(for an image that is already normalised, set bias_correction=False)"
        )
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(n) for n in n_iterations])
    n4.Execute(shrunk, foreground)
    log_field = n4.GetLogBiasFieldAsImage(image)
    return log_field, shrunk / sitk.Exp(_subsample(log_field, factors)), foreground


def _roi_region(mask, margin_mm):
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


def _crop(image, region):
    (x0, x1), (y0, y1), (z0, z1) = region
    if (x0, y0, z0) == (0, 0, 0) and (x1, y1, z1) == image.GetSize():
        return image
    return image[x0:x1, y0:y1, z0:z1]


def _resample(image, mask, spacing, interpolator):
    """Resample image and mask onto one grid of `spacing` covering the image's extent, centred on it.

    The output grid's axes are the image's own (its direction is kept), so each output voxel is a
    fixed point of the input's index space. :func:`_preprocess_volume` calls it in the voxel frame
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
