"""The voxel values of an image: no NaN or infinite voxel, not constant; and a floating-point
NIfTI file checked on its stored values, which ITK 5 reads with NaN and infinities turned into 0."""

import numpy as np
import SimpleITK as sitk

from ..exceptions import CohortError

__all__ = ["check_voxel_values", "nifti_non_finite"]


def check_voxel_values(image, *, patient_id=None, column=None, allow_constant=False):
    """Raise if `image` has a non-finite voxel or, unless allowed, the same value everywhere.

    Parameters
    ----------
    image : SimpleITK.Image
        A scalar image (any pixel type; integer images are always finite).
    patient_id : object, default=None
        Row of the image's cell, named in the error.
    column : str, default=None
        Column of the image's cell, named in the error.
    allow_constant : bool, default=False
        Accept an image whose voxels all hold the same (finite) value.

    Returns
    -------
    image : SimpleITK.Image
        `image` itself, unchanged.

    Raises
    ------
    CohortError
        Naming `patient_id` and `column`: the image holds NaN or infinite voxels (how many of each,
        and where the first one is, as a voxel index ``(x, y, z)``), or it is constant.

    Notes
    -----
    An image with a non-finite voxel, which N4, resampling and every statistic would spread
    through their output, or a constant one, which carries no anatomy (a normalisation would
    divide by zero, or after N4 turn rounding noise into values that look like tissue), is refused
    by every step that reads whole images (:class:`~p53radiomics.N4Resampler`,
    :class:`~p53radiomics.LargestSliceCropper`), and by :func:`validate_cohort` with
    ``check_voxels=True``. NIfTI files are checked on their stored values: ITK 5's NIfTI reader
    turns NaN and infinite voxels into 0 as it reads (fixed in ITK 6), which would hide them
    (:func:`read_image` refuses such a file).

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> from p53radiomics.io import check_voxel_values
    >>> array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    >>> image = check_voxel_values(sitk.GetImageFromArray(array))
    >>> array[1, 2, 3] = np.nan
    >>> check_voxel_values(sitk.GetImageFromArray(array), patient_id="P1", column="ap")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P1', column 'ap': the image holds 1 NaN and 0 infinite voxels (of 24; the first at voxel index (3, 2, 1)): fix or mask them in the image file before preprocessing
    >>> check_voxel_values(sitk.Image([4, 3, 2], sitk.sitkFloat32), patient_id="P1", column="ap")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: patient 'P1', column 'ap': the image is constant (every voxel is 0): it holds no anatomy to preprocess
    """
    array = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    # min and max are NaN or infinite exactly where some voxel is: two passes without a bool array
    low, high = array.min(), array.max()
    if np.issubdtype(array.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        finite = np.isfinite(array)
        n_nan = int(np.count_nonzero(np.isnan(array)))
        n_inf = int(finite.size - np.count_nonzero(finite)) - n_nan
        first = np.unravel_index(int(np.argmin(finite)), array.shape)[::-1]
        raise CohortError(
            f"the image holds {n_nan} NaN and {n_inf} infinite voxels (of {array.size}; the first "
            f"at voxel index {tuple(int(i) for i in first)}): fix or mask them in the image file "
            "before preprocessing",
            patient_id=patient_id,
            column=column,
        )
    if not allow_constant and low == high:
        raise CohortError(
            f"the image is constant (every voxel is {float(low):g}): it holds no anatomy to preprocess",
            patient_id=patient_id,
            column=column,
        )
    return image


def nifti_non_finite(path, patient_id, column):
    """Refuse a floating-point NIfTI file holding NaN or infinite values.

    ITK 5's NIfTI reader replaces them with 0 as it reads (InsightSoftwareConsortium/ITK#6683,
    fixed in ITK 6), so the image SimpleITK returns cannot show them: nibabel reads the values as
    stored. Integer files cannot hold them and are not read again.
    """
    name = path.name.lower()
    if path.is_dir() or not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return
    import nibabel

    try:
        nifti = nibabel.load(str(path))
    except Exception:  # noqa: BLE001 - SimpleITK read it: leave the format's details to it
        return
    if not np.issubdtype(nifti.header.get_data_dtype(), np.floating):
        return
    stored = np.asarray(nifti.dataobj.get_unscaled())
    finite = np.isfinite(stored)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(stored)))
        n_inf = int(finite.size - np.count_nonzero(finite)) - n_nan
        first = np.unravel_index(int(np.argmin(finite)), stored.shape)[:3]
        raise CohortError(
            f"the NIfTI file {str(path)!r} stores {n_nan} NaN and {n_inf} infinite voxels (of "
            f"{stored.size}; the first at voxel index {tuple(int(i) for i in first)}), which ITK "
            "reads as 0: fix or mask them in the image file before preprocessing",
            patient_id=patient_id,
            column=column,
        )
