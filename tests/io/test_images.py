"""Reading one cell as an image or a mask (files of every format SimpleITK reads, images in
memory), the geometry of a mask against its image, and a real abdominal MR read as a case."""

import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.io import (
    GEOMETRY_TOLERANCE,
    check_geometry,
    load_case,
    read_image,
    read_mask,
    validate_cohort,
)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_read_image_formats_round_trip(tmp_path, ext, make_volume):
    image = make_volume()
    path = tmp_path / f"v{ext}"
    sitk.WriteImage(image, str(path))
    read = read_image(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-5)


def test_in_memory_image_is_returned_untouched(make_volume, mask_like):
    image = make_volume()
    before = sitk.GetArrayFromImage(image).copy()
    assert read_image(image) is image
    mask = mask_like(image, label=5)
    binary = read_mask(mask)
    assert binary is not mask and sitk.GetArrayViewFromImage(mask).max() == 5
    assert set(np.unique(sitk.GetArrayFromImage(binary))) == {0, 1}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), before)


def test_not_a_volume(tmp_path):
    with pytest.raises(CohortError, match="3D volume"):
        read_image(sitk.Image([4, 4], sitk.sitkFloat32), patient_id="P1", column="ap")
    rgb = sitk.Image([4, 4, 3], sitk.sitkVectorUInt8, 3)
    with pytest.raises(CohortError, match="scalar"):
        read_image(rgb, patient_id="P1", column="ap")
    with pytest.raises(CohortError, match="SimpleITK.Image"):
        read_image(3.5, patient_id="P1", column="ap")


def test_one_geometry_tolerance_is_the_default_everywhere():
    import inspect

    assert GEOMETRY_TOLERANCE == 1e-3
    for function, name in (
        (check_geometry, "tolerance"),
        (load_case, "geometry_tolerance"),
        (validate_cohort, "geometry_tolerance"),
    ):
        assert inspect.signature(function).parameters[name].default == GEOMETRY_TOLERANCE
    # relative to the image's smallest voxel spacing for origin and spacing, absolute for cosines
    image = sitk.Image([4, 4, 4], sitk.sitkFloat32)
    image.SetSpacing((0.5, 0.5, 5.0))
    mask = sitk.Image(image)
    mask.SetOrigin((0.0, 0.0, 0.9 * GEOMETRY_TOLERANCE * 0.5))
    assert check_geometry(image, mask) is None
    mask.SetOrigin((0.0, 0.0, 1.1 * GEOMETRY_TOLERANCE * 0.5))
    assert check_geometry(image, mask).startswith("origin differs")
    assert "tolerated: 0.0005 mm, 0.001 of the smallest voxel spacing" in check_geometry(
        image, mask
    )
    mask = sitk.Image(image)
    mask.SetDirection(sitk.VersorTransform((0, 0, 1), 0.9 * GEOMETRY_TOLERANCE).GetMatrix())
    assert check_geometry(image, mask) is None
    mask.SetDirection(sitk.VersorTransform((0, 0, 1), 1.1 * GEOMETRY_TOLERANCE).GetMatrix())
    assert check_geometry(image, mask).startswith("direction differs")


def test_real_abdominal_mr(shared_data, tmp_path):
    folder = shared_data / "abdominal_mr"
    image, mask = folder / "example_mr_sm.nii.gz", folder / "example_seg_roi_subset_mr.nii.gz"
    X = pd.DataFrame({"pvp": [str(image)], "mask": [str(mask)]}, index=["MR1"])
    labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(mask))))
    if labels.size > 2:  # a multi-organ segmentation: validation must say so
        with pytest.raises(CohortError, match="labels"):
            validate_cohort(X, phases=("pvp",))
        single = sitk.ReadImage(str(mask)) == int(labels[1])
        shutil.copy(image, tmp_path / "mr.nii.gz")
        sitk.WriteImage(single, str(tmp_path / "liver.nii.gz"))
        X = pd.DataFrame(
            {"pvp": [str(tmp_path / "mr.nii.gz")], "mask": [str(tmp_path / "liver.nii.gz")]},
            index=["MR1"],
        )
    validate_cohort(X, phases=("pvp",))
    loaded, binary = load_case(X, "MR1", phases=("pvp",))["pvp"]
    assert loaded.GetSize() == (117, 91, 20)
    assert sitk.GetArrayViewFromImage(binary).sum() > 1000
