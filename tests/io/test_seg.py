"""DICOM SEG masks (issue 16, item 1): the real SEG objects of highdicom's tests on the real CT
series they were derived from, and round trips through highdicom's writer on a synthetic case."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics.exceptions import CohortError
from p53radiomics.io import SEG_FRACTION_THRESHOLD, load_case, read_image, read_mask


def _array(image):
    return sitk.GetArrayFromImage(image)


# ------------------------------------------------------------------------- the real files
def test_real_binary_seg_on_its_series(real_ct):
    import highdicom

    folder, dicom = real_ct
    image = read_image(str(folder))
    mask = read_mask(str(dicom / "seg_image_ct_binary.dcm"), reference=image)
    assert mask.GetSize() == image.GetSize() and mask.GetOrigin() == image.GetOrigin()
    assert int(_array(mask).sum()) == 638  # as the data's README says
    # placed by plane position: highdicom's volume runs from z = 105.52 down, the image up
    volume = highdicom.seg.segread(str(dicom / "seg_image_ct_binary.dcm")).get_volume()
    np.testing.assert_array_equal(_array(mask), volume.array[::-1, :, :, 0])
    # FRACTIONAL holding 0 and 1 only: the same mask
    fractional = read_mask(str(dicom / "seg_image_ct_binary_fractional.dcm"), reference=image)
    np.testing.assert_array_equal(_array(fractional), _array(mask))


def test_real_true_fractional_seg_threshold(real_ct):
    import highdicom

    folder, dicom = real_ct
    path = dicom / "seg_image_ct_true_fractional.dcm"
    mask = _array(read_mask(str(path), reference=read_image(str(folder))))
    fractions = highdicom.seg.segread(str(path)).get_volume().array[::-1, :, :, 0]
    assert SEG_FRACTION_THRESHOLD == 0.5
    assert {round(float(v) * 255) for v in np.unique(fractions)} == {0, 64, 128}
    np.testing.assert_array_equal(mask, fractions >= 0.5)
    assert mask[fractions == 64 / 255].sum() == 0 and mask[fractions > 0.5].all()


def _overlap_grid():
    """The grid of all four real slices at 1.25 mm: 165 slices from z = -99.48 to 105.52."""
    image = sitk.Image([16, 16, 165], sitk.sitkInt16)
    image.SetSpacing((0.488281, 0.488281, 1.25))
    image.SetOrigin((-125.0, -128.100006, -99.480003))
    return image


def test_real_overlapping_segments_each_read_alone(shared_data):
    path = str(shared_data / "dicom" / "seg_image_ct_binary_overlap.dcm")
    grid = _overlap_grid()
    first = _array(read_mask(path + "#segment=1", reference=grid))
    second = _array(read_mask(path + "#segment=second segment", reference=grid))
    by_parameter = _array(read_mask(path, reference=grid, segment="Second Segment"))
    np.testing.assert_array_equal(second, by_parameter)
    np.testing.assert_array_equal(first, _array(read_mask(path, reference=grid, segment=1)))
    assert (first & second).any() and (first != second).any()  # they overlap, and differ
    assert int(first.sum() + second.sum()) == 80
    assert set(np.flatnonzero(first.any(axis=(1, 2)))) == {0, 162, 163, 164}  # the four slices


def test_real_seg_errors(shared_data, real_ct, assert_located):
    folder, dicom = real_ct
    overlap = str(dicom / "seg_image_ct_binary_overlap.dcm")
    grid = _overlap_grid()
    with pytest.raises(CohortError, match=r"2 segments: 1 \('first segment'\), 2 \('second"):
        read_mask(overlap, reference=grid, patient_id="P1", column="ap_mask")
    with pytest.raises(CohortError, match=r"no segment 'liver'; its segments: 1 \('first"):
        read_mask(overlap + "#segment=liver", reference=grid)
    with pytest.raises(CohortError, match="no segment number 3"):
        read_mask(overlap, reference=grid, segment=3)
    with pytest.raises(CohortError, match="the cell selects segment '1' and the segment="):
        read_mask(overlap + "#segment=1", reference=grid, segment=2)
    with pytest.raises(CohortError, match="'#roi=' does not apply to .*a DICOM SEG"):
        read_mask(overlap + "#roi=GTV", reference=grid)
    with pytest.raises(CohortError, match="is a DICOM SEG, a mask: it belongs in a mask column"):
        read_image(overlap)
    # the overlap SEG spans the slice 202 mm away, which the three-slice image lacks
    X = pd.DataFrame({"ap": [str(folder)], "ap_mask": [overlap + "#segment=2"]}, index=["P7"])
    with pytest.raises(
        CohortError, match=r"do not fit the image's grid: .* size \(16, 16, 3\)"
    ) as e:
        load_case(X, "P7", phases=("ap",))
    assert_located(e, "P7", "ap_mask")


# ------------------------------------------------------------------ synthetic round trips
def test_round_trip_frames_placed_by_position_not_order(synthetic_dicom_case, write_seg, tmp_path):
    folder, image, label = synthetic_dicom_case
    tumour = _array(label) == 1
    tumour_or_other = _array(label) > 0  # overlaps the first segment
    path = write_seg(
        folder,
        [tumour, tumour_or_other],
        tmp_path / "seg.dcm",
        labels=["liver tumour", "lesions"],
        order=[5, 2, 7, 0, 3, 6, 1, 4],  # frames in no spatial order; empty slices omitted
    )
    X = pd.DataFrame(
        {"ap": [str(folder)], "ap_mask": [f"{path}#segment=liver tumour"]}, index=["P1"]
    )
    _, mask = load_case(X, "P1", phases=("ap",))["ap"]
    np.testing.assert_array_equal(_array(mask), tumour)
    other = read_mask(f"{path}#segment=2", reference=read_image(str(folder)))
    np.testing.assert_array_equal(_array(other), tumour_or_other)


def test_round_trip_fractional_threshold(synthetic_dicom_case, write_seg, tmp_path):
    folder, image, label = synthetic_dicom_case
    fractions = np.zeros(_array(label).shape, dtype=np.float32)
    fractions[2, 5:9, 5:9] = 127 / 255  # stored as 127 of 255: just below one half
    fractions[3, 5:9, 5:9] = 128 / 255
    fractions[4, 5:9, 5:9] = 1.0
    path = write_seg(folder, [fractions], tmp_path / "frac.dcm", fractional=True)
    mask = _array(read_mask(str(path), reference=image))
    assert mask[2].sum() == 0 and mask[3].sum() == 16 and mask[4].sum() == 16
    assert mask.sum() == 32


def test_frames_off_the_image_grid_are_refused(
    synthetic_dicom_case, write_seg, tmp_path, assert_located
):
    folder, image, label = synthetic_dicom_case
    path = str(write_seg(folder, [_array(label) == 1], tmp_path / "seg.dcm"))
    shifted = sitk.Image(image)
    shifted.SetOrigin(np.add(image.GetOrigin(), (0.3, 0.0, 0.0)).tolist())  # 0.4 of a voxel
    X = pd.DataFrame({"ap": [shifted], "mask": [path]}, index=["P3"])
    with pytest.raises(
        CohortError, match="do not lie on the image's grid: a voxel centre lies 0.3 mm"
    ) as e:
        load_case(X, "P3", phases=("ap",))
    assert_located(e, "P3", "mask")
    finer = sitk.Image([48, 40, 8], sitk.sitkInt16)
    finer.SetSpacing((0.375, 0.375, 2.5))
    finer.SetOrigin(image.GetOrigin())
    with pytest.raises(CohortError, match=r"their voxels \(spacing \(0.75, 0.75, 2.5\)"):
        read_mask(path, reference=finer, patient_id="P3", column="mask")
    # no reference: the grid the frames span, which highdicom derives trusting the header's
    # SpacingBetweenSlices (SimpleITK's writer puts 1 mm for 2.5-mm slices): refused, with the way out
    with pytest.raises(CohortError, match="no grid of its own: read it onto its image's"):
        read_mask(path)


def test_seg_without_reference_keeps_its_own_grid(shared_data):
    path = shared_data / "dicom" / "seg_image_ct_binary.dcm"
    own = read_mask(str(path))
    assert own.GetSize() == (16, 16, 3) and int(_array(own).sum()) == 638
    assert own.GetOrigin()[2] == pytest.approx(105.52, abs=1e-4)  # highdicom's slice order
    assert own.GetSpacing() == pytest.approx((0.488281, 0.488281, 1.25), rel=1e-6)


def test_features_from_seg_equal_label_image(synthetic_dicom_case, write_seg, tmp_path):
    """End to end through N4Resampler and RadiomicsExtractor: a SEG cell gives the features of
    its label image (issue 16's figure: max relative difference, printed)."""
    from sklearn.pipeline import make_pipeline

    from p53radiomics import N4Resampler, RadiomicsExtractor
    from p53radiomics.cache import fingerprint
    from p53radiomics.io import validate_cohort

    folder, image, label = synthetic_dicom_case
    tumour = _array(label) == 1
    path = write_seg(folder, [tumour, _array(label) > 0], tmp_path / "seg.dcm")
    mask = sitk.GetImageFromArray(tumour.astype(np.uint8))
    mask.CopyInformation(image)
    X = pd.DataFrame(
        {"ap": [str(folder), image], "ap_mask": [f"{path}#segment=1", mask]}, index=["seg", "nii"]
    )
    params = {
        "setting": {"binCount": 16},
        "imageType": {"Original": {}},
        "featureClass": {"firstorder": None, "shape": None, "glcm": None},
    }
    validate_cohort(X, phases=("ap",), check_images=True)  # a SEG is checked on its image's grid
    cache = tmp_path / "cache"  # a selector cell is cached under its file and its selector
    pipeline = make_pipeline(
        N4Resampler(
            phases=("ap",), shrink_factor=2, n_iterations=(10, 10), margin_mm=5.0, cache_dir=cache
        ),
        RadiomicsExtractor(phases=("ap",), params=params, cache_dir=cache),
    )
    features = pipeline.fit_transform(X)
    again = pipeline.transform(X)
    assert pipeline[0].cache_hits_ == 2 and pipeline[1].cache_hits_ == 2
    pd.testing.assert_frame_equal(again, features)
    assert fingerprint(f"{path}#segment=1") != fingerprint(f"{path}#segment=2")
    assert fingerprint(f"{path}#segment=1") != fingerprint(str(path))
    a, b = features.loc["seg"].to_numpy(), features.loc["nii"].to_numpy()
    difference = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))
    print(
        f"SEG vs label image: {features.shape[1]} features, max relative difference {difference:.3g}"
    )
    assert difference == 0.0
