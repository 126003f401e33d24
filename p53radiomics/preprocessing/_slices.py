"""The axial slice with the largest ROI (and its neighbours), cropped around it and resized: the
CNN's input."""

from numbers import Integral

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from ..exceptions import CohortError
from ..io import (
    DEFAULT_PHASES,
    check_label,
    check_mask_set,
    check_voxel_values,
    load_case,
    mask_set_patients,
    phase_columns,
)
from ..utils._cohort_step import CohortStep
from ..utils._sklearn import Interval, StrOptions

__all__ = ["LargestSliceCropper"]

#: The orientation every volume is brought to before cropping (``sitk.DICOMOrient``'s code: the
#: letter of each voxel axis, fastest first, is the side of the patient its index increases
#: towards): x to the patient's left, y to the posterior, z to the head. DICOM's patient frame,
#: and that of a SimpleITK image with an identity direction.
CROP_ORIENTATION = "LPS"


class LargestSliceCropper(CohortStep):
    """The axial slice with the largest ROI of each phase, cropped around the ROI and resized.

    Per patient and phase, as in the study: the axial slice where the ROI has the most voxels; the
    ROI's bounding box on that slice, grown by `margin` pixels on every side; the box made square
    around its centre by widening its shorter side (in mm, so the aspect ratio is kept even where
    pixels are not square); then resampled to ``size x size`` pixels by linear interpolation
    (where the square reaches beyond the image, the edge pixels are repeated).

    **Orientation.** Image and mask are first brought to one orientation, whatever the order in
    which the file stores its axes (LPS or RAS, a flipped axis, axial, coronal or sagittal
    storage): their voxel axes are permuted and flipped, without interpolation, so that they run
    towards the patient's left, posterior and superior (``sitk.DICOMOrient(image, "LPS")``; an
    oblique volume gets the axis order and signs closest to these). An axial slice is then a
    plane of constant superior-inferior index, and each crop is the radiological view of it, as a
    radiologist reads an axial slice (seen from the feet): **rows run from anterior (row 0) to
    posterior, columns from the patient's right (column 0) to the patient's left**, so the
    patient's right is on the left of the crop shown with row 0 on top (``matplotlib``'s
    ``imshow``). The same anatomy gives the same crop however it is stored.

    With ``context_slices=k`` the crops are 2.5D: the ``k`` slices below and the ``k`` above the
    largest slice are cropped too, each through the same square (the largest slice's box), and
    become channels: phase 0's ``2k + 1`` slices from the lowest (inferior) to the highest
    (superior), then phase 1's, and so on. Slices are neighbours along the superior-inferior voxel
    axis at the volume's own spacing (1 mm after :class:`N4Resampler`'s default resampling).
    Where the largest slice lies fewer than ``k`` slices from an end of the volume, the end slice
    is repeated (edge replication, as in the in-plane direction), so every phase has ``2k + 1``
    channels. Give
    :class:`SkorchCNNFeaturizer` ``n_phases=len(phases)`` to take these crops phase by phase.

    Works on a raw cohort table or on the output of :class:`N4Resampler`. The step learns nothing.

    Parameters
    ----------
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases to crop, in the order of the output's channels.
    margin : int, default=10
        Pixels added to each side of the ROI's bounding box (the study's peritumoral margin).
    size : int, default=256
        Side of the output crops, in pixels.
    context_slices : int, default=0
        Slices ``k`` taken on each side of the largest slice; ``0`` gives the study's single
        slice per phase.
    mask_set : str or None, default=None
        The ROIs to crop around: ``None``, the primary masks; a name such as ``"reader2"``, that
        set of repeated masks (columns ``f"{phase}_mask_reader2"``, else ``"mask_reader2"``; see
        :func:`~p53radiomics.io.phase_columns`), e.g. for the CNN features' ICC across readers.
        The rules are :class:`~p53radiomics.RadiomicsExtractor`'s: every patient transformed must
        have the set; under ``on_error="raise"`` a patient without it raises
        :class:`~p53radiomics.CohortError` (select the patients first,
        ``X.loc[mask_set_patients(X, "reader2")]``, see
        :func:`~p53radiomics.io.mask_set_patients`); under ``"skip"`` its crops are NaN and it
        is listed in ``skipped_``. Errors name the repeated mask's column.
    label : int, dict or None, default=None
        The label of multi-label masks to crop around (an int for every phase, or a dict phase
        -> int; see :class:`N4Resampler`). ``None``: each mask holds one label. A mask without
        the label raises :class:`~p53radiomics.CohortError` listing the labels it holds.
    normalization : {"zscore"} or None, default="zscore"
        ``"zscore"``: each crop (one patient, one phase, all its ``2k + 1`` slices together, so
        that their contrast is kept) minus its mean, divided by its standard deviation (a constant
        crop is only centred), as the study normalised each channel. ``None`` keeps the
        intensities of the input.
    n_jobs : int or None, default=None
        Patients cropped in parallel, through joblib (loky processes by default). ``None`` means 1
        unless in a :func:`joblib.parallel_config` context; ``-1`` uses every core. The crops do
        not depend on `n_jobs` or the backend.
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"``: the first bad case raises :class:`~p53radiomics.exceptions.CohortError` naming
        the patient and the column (a missing or unreadable file, an empty mask, an image with NaN
        or infinite voxels or a constant one...). ``"skip"``: a bad case is warned
        (:class:`~p53radiomics.exceptions.SkippedCaseWarning`) and recorded in ``skipped_``, and
        its crops, every phase, are NaN; the other cases are cropped.
    verbose : int, default=0
        ``0`` silent; ``1`` or more shows a progress bar.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Columns of the table seen in ``fit`` (only after ``fit``).
    n_features_in_ : int
        Number of those columns (only after ``fit``).
    skipped_ : pandas.DataFrame
        Set by ``transform``: the cases its last call skipped (index: patient id; columns
        ``column``, the cell at fault, and ``reason``). Empty when none was.

    See Also
    --------
    N4Resampler : Bias-field correction, crop, resampling and normalisation of the volumes.

    Examples
    --------
    >>> import numpy as np, pandas as pd, SimpleITK as sitk
    >>> from p53radiomics.preprocessing import LargestSliceCropper
    >>> image = sitk.GetImageFromArray(np.arange(4 * 20 * 20, dtype=np.float32).reshape(4, 20, 20))
    >>> mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    >>> mask.CopyInformation(image)
    >>> mask[5:9, 6:12, 1] = 1
    >>> mask[5:7, 6:8, 2] = 1
    >>> X = pd.DataFrame({"ap": [image], "pvp": [image], "mask": [mask]}, index=["P1"])
    >>> crops = LargestSliceCropper(phases=("ap", "pvp"), margin=2, size=32).fit_transform(X)
    >>> crops.shape, crops.dtype
    ((1, 2, 32, 32), dtype('float32'))

    2.5D: the largest slice (1) and one on each side (0 and 2), for each phase.

    >>> cropper = LargestSliceCropper(phases=("ap", "pvp"), size=32, context_slices=1)
    >>> cropper.fit_transform(X).shape
    (1, 6, 32, 32)
    """

    _parameter_constraints = {
        "phases": ["array-like"],
        "margin": [Interval(Integral, 0, None, closed="left")],
        "size": [Interval(Integral, 1, None, closed="left")],
        "context_slices": [Interval(Integral, 0, None, closed="left")],
        "normalization": [StrOptions({"zscore"}), None],
        "mask_set": [None, str],
        "label": [Integral, dict, None],
        **CohortStep._parameter_constraints,  # n_jobs, on_error, verbose
    }
    _progress = ("LargestSliceCropper", "case")

    def __init__(
        self,
        phases=DEFAULT_PHASES,
        *,
        margin=10,
        size=256,
        context_slices=0,
        normalization="zscore",
        mask_set=None,
        label=None,
        n_jobs=None,
        on_error="raise",
        verbose=0,
    ):
        self.phases = phases
        self.margin = margin
        self.size = size
        self.context_slices = context_slices
        self.normalization = normalization
        self.mask_set = mask_set
        self.label = label
        self.n_jobs = n_jobs
        self.on_error = on_error
        self.verbose = verbose

    def transform(self, X):
        """Crop every case and phase.

        Parameters
        ----------
        X : pandas.DataFrame
            Cohort table (see :mod:`p53radiomics.io`); image and mask cells are paths or
            :class:`SimpleITK.Image`. It is not modified.

        Returns
        -------
        crops : ndarray of shape (n_patients, n_phases * (2 * context_slices + 1), size, size), \
                dtype float32
            With ``k = context_slices``, ``crops[i, j * (2k + 1) + k + d]`` is slice ``d``
            (``-k <= d <= k``, inferior to superior) from the largest one of phase ``phases[j]``
            of patient ``X.index[i]`` (``crops[i, j]`` for ``k = 0``), in the radiological view
            (see Orientation above): rows from anterior to posterior, columns from the patient's
            right to the patient's left. NaN for a case skipped under ``on_error="skip"``.

        Raises
        ------
        CohortError
            Under ``on_error="raise"``, for a missing or unreadable file, an empty mask, a mask
            with several labels, a mask and image of different geometry, or an image with NaN or
            infinite voxels or a constant one, naming the patient and the column.
        """
        self._start_transform(X)
        phases = tuple(self.phases)
        depth = 2 * self.context_slices + 1
        mask_set = self.mask_set
        if mask_set is not None and self.on_error == "raise":  # under "skip": skipped cases
            mask_set_patients(X, mask_set, phases, require_all=True)
        results = self._run_cases(X, list(X.index), phase_columns(X, phases, mask_set))
        crops = np.empty((len(X), len(phases), depth, self.size, self.size), dtype=np.float32)
        for i, patient_id in enumerate(X.index):
            crop = results[patient_id]
            crops[i] = np.nan if isinstance(crop, CohortError) else crop
        outcomes = ((patient_id, results[patient_id]) for patient_id in X.index)
        self._record_skipped(*self._skipped_patients(X, outcomes, "their crops are NaN"))
        if self.normalization == "zscore":
            mean = crops.mean(axis=(2, 3, 4), keepdims=True, dtype=np.float64)
            std = crops.std(axis=(2, 3, 4), keepdims=True, dtype=np.float64)
            crops = ((crops - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
        return crops.reshape(len(X), len(phases) * depth, self.size, self.size)

    def _check_settings(self):
        check_mask_set(self.mask_set)
        check_label(self.label, tuple(self.phases))

    def _check_table(self, X):
        super()._check_table(X)
        phase_columns(X, self.phases, check_mask_set(self.mask_set))

    # The hooks of CohortStep's case loop: a case is a patient, its context the phase columns.
    def _case_worker(self):
        return _crop_case

    def _case_args(self, X, patient_id, key, cache, phase_cols):
        settings = (self.margin, self.size, self.context_slices, self.label)
        if self.mask_set is None:
            columns = list(dict.fromkeys(c for pc in phase_cols for c in (pc.image, pc.mask)))
            return X.loc[[patient_id], columns], patient_id, phase_cols, settings
        # A repeated set's masks go to the worker as each phase's own mask column, which
        # load_case reads; their errors are given the real column back in _case_result.
        cells = {}
        for pc in phase_cols:
            cells[pc.image] = [X.at[patient_id, pc.image]]
            cells[f"{pc.phase}_mask"] = [X.at[patient_id, pc.mask]]
        row = pd.DataFrame(cells, index=pd.Index([patient_id], name=X.index.name))
        as_read = [pc._replace(mask=f"{pc.phase}_mask") for pc in phase_cols]
        return row, patient_id, as_read, settings

    def _case_result(self, case, key, outcome, cache, phase_cols):
        if isinstance(outcome, CohortError):
            real = {f"{pc.phase}_mask": pc.mask for pc in phase_cols}
            if self.mask_set is not None and outcome.column in real:
                outcome = CohortError(
                    outcome.reason, patient_id=outcome.patient_id, column=real[outcome.column]
                )
            raise outcome
        return outcome


def _crop_case(row, patient_id, phase_cols, settings):
    """The crops of one patient, every phase, as ``(n_phases, 2k + 1, size, size)``; or a CohortError.

    Runs in a joblib worker (a process, a thread or a dask worker); `row` is the patient's row of
    the cohort table, with the image and mask columns of `phase_cols` only.
    """
    margin, size, context, label = settings
    try:
        case = load_case(row, patient_id, tuple(pc.phase for pc in phase_cols), label=label)
        crops = []
        for pc in phase_cols:
            image, mask = case[pc.phase]
            check_voxel_values(image, patient_id=patient_id, column=pc.image)
            crops.append(_largest_slice_crop(*_oriented(image, mask), margin, size, context))
    except CohortError as error:
        return error
    return np.stack(crops)


def _oriented(image, mask):
    """Image and mask with their voxel axes permuted and flipped to :data:`CROP_ORIENTATION`.

    No voxel is interpolated: ``sitk.DICOMOrient`` only reorders them (every voxel keeps its
    physical position), so image and mask stay aligned voxel for voxel. A volume already in that
    orientation (as :class:`~p53radiomics.N4Resampler`'s are) is returned as it is, which is what
    ``DICOMOrient`` would return, without its copy (about 2 ms a volume).
    """
    return _in_crop_orientation(image), _in_crop_orientation(mask)


def _in_crop_orientation(volume):
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(volume.GetDirection())
    return volume if code == CROP_ORIENTATION else sitk.DICOMOrient(volume, CROP_ORIENTATION)


def largest_slice(mask):
    """Index (along the third voxel axis) of the slice where `mask` has the most voxels.

    Parameters
    ----------
    mask : SimpleITK.Image
        A 3D mask (non-zero voxels = ROI).

    Returns
    -------
    index : int
        The first such slice where several have the same area.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> from p53radiomics.preprocessing._slices import largest_slice
    >>> mask = sitk.Image([8, 8, 5], sitk.sitkUInt8)
    >>> mask[2:4, 2:4, 1] = 1
    >>> mask[2:6, 2:6, 3] = 1
    >>> largest_slice(mask)
    3
    """
    areas = np.count_nonzero(sitk.GetArrayViewFromImage(mask), axis=(1, 2))
    return int(np.argmax(areas))


def _largest_slice_crop(image, mask, margin, size, context=0):
    """The square crops of one phase, as a float32 ``(2 * context + 1, size, size)`` array.

    The largest slice (along the third voxel axis) and ``context`` slices on each side (the end
    slice repeated beyond the volume), all through the largest slice's square; rows along the
    second voxel axis, columns along the first. :meth:`LargestSliceCropper.transform` orients
    image and mask first (:func:`_oriented`).
    """
    k = largest_slice(mask)
    volume = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    indices = np.clip(np.arange(k - context, k + context + 1), 0, volume.shape[0] - 1)
    rows, cols = np.nonzero(sitk.GetArrayViewFromImage(mask)[k])
    spacing_x, spacing_y = image.GetSpacing()[:2]
    centre_y = (rows.min() + rows.max()) / 2
    centre_x = (cols.min() + cols.max()) / 2
    side_mm = max(
        (cols.max() - cols.min() + 1 + 2 * margin) * spacing_x,
        (rows.max() - rows.min() + 1 + 2 * margin) * spacing_y,
    )
    # Pixel centres of the output, as (continuous) indices into the slice.
    steps = (np.arange(size) + 0.5) / size - 0.5
    ys = centre_y + steps * side_mm / spacing_y
    xs = centre_x + steps * side_mm / spacing_x
    grid = np.meshgrid(ys, xs, indexing="ij")
    return np.stack(
        [
            ndimage.map_coordinates(volume[z].astype(np.float32), grid, order=1, mode="nearest")
            for z in indices
        ]
    )
