"""label= on the image steps (one label of a multi-label mask) and peritumoral rings (regions=)."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from p53radiomics import CohortError
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler
from p53radiomics.radiomics import RadiomicsExtractor, feature_names
from p53radiomics.radiomics._regions import ring_mask

PARAMS = {
    "featureClass": {"firstorder": ["Mean", "Energy"], "shape": ["VoxelVolume"]},
    "setting": {"binCount": 8},
}
N4 = {"phases": ("ap", "pvp"), "n_iterations": (2,), "margin_mm": 6.0, "spacing": None}


@pytest.fixture
def tables(make_volume):
    """A multi-label table (labels 1 and 2 in every mask) and the binary table of label 2."""
    rows, binary = {}, {}
    for pid, seed in (("P1", 0), ("P2", 1)):
        for phase, shift in (("ap", 0), ("pvp", 5)):
            image = make_volume(seed + shift, size=(20, 18, 8))
            labels = sitk.Image(image.GetSize(), sitk.sitkUInt8)
            labels.CopyInformation(image)
            labels[3:8, 3:7, 2:5] = 1
            labels[10:16, 9:15, 3:6] = 2
            rows.setdefault(pid, {})[phase] = image
            rows[pid][f"{phase}_mask"] = labels
            binary.setdefault(pid, {})[phase] = image
            binary[pid][f"{phase}_mask"] = sitk.Cast(labels == 2, sitk.sitkUInt8)
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame.from_dict(
        binary, orient="index"
    )


@pytest.mark.parametrize("label", [2, {"ap": 2, "pvp": 2}])
def test_label_end_to_end_equals_binary_mask(tables, label):
    multi, binary = tables
    expected = RadiomicsExtractor(("ap", "pvp"), PARAMS).fit_transform(binary)
    got = RadiomicsExtractor(("ap", "pvp"), PARAMS, label=label).fit_transform(multi)
    pd.testing.assert_frame_equal(got, expected)
    pre = N4Resampler(**N4, label=label).fit_transform(multi)
    pre_binary = N4Resampler(**N4).fit_transform(binary)
    for pid in multi.index:
        assert set(np.unique(sitk.GetArrayFromImage(pre.at[pid, "ap_mask"]))) == {0, 1}
    pd.testing.assert_frame_equal(
        RadiomicsExtractor(("ap", "pvp"), PARAMS).fit_transform(pre),
        RadiomicsExtractor(("ap", "pvp"), PARAMS).fit_transform(pre_binary),
    )
    crop = LargestSliceCropper(("ap", "pvp"), size=16, label=label).fit_transform(multi)
    np.testing.assert_array_equal(
        crop, LargestSliceCropper(("ap", "pvp"), size=16).fit_transform(binary)
    )


def test_label_none_keeps_the_multi_label_error(tables, assert_located):
    with pytest.raises(CohortError, match="holds 2 labels") as excinfo:
        RadiomicsExtractor(("ap",), PARAMS).fit_transform(tables[0])
    assert_located(excinfo, "P1", "ap_mask")


@pytest.mark.parametrize(
    "step",
    [
        lambda: RadiomicsExtractor(("ap", "pvp"), PARAMS, label={"ap": 2, "pvp": 3}),
        lambda: N4Resampler(**N4, label={"ap": 2, "pvp": 3}),
        lambda: LargestSliceCropper(("ap", "pvp"), size=16, label={"ap": 2, "pvp": 3}),
    ],
)
def test_absent_label_names_patient_column_and_labels(tables, step, assert_located):
    with pytest.raises(
        CohortError, match=r"label 3 is not in the mask; .*holds are: 1, 2"
    ) as excinfo:
        step().fit_transform(tables[0])
    assert_located(excinfo, "P1", "pvp_mask")


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, {"ap": 2}, {"ap": 2, "pvp": 2, "dp": 2}])
def test_bad_label_refused_in_fit(tables, bad):
    with pytest.raises((ValueError, TypeError), match="label"):
        LargestSliceCropper(("ap", "pvp"), label=bad).fit(tables[0])


def test_params_label_agrees_with_label(tables):
    multi, binary = tables
    expected = RadiomicsExtractor(("ap",), PARAMS).fit_transform(binary)
    with_setting = {**PARAMS, "setting": {**PARAMS["setting"], "label": 2}}
    pd.testing.assert_frame_equal(
        RadiomicsExtractor(("ap",), with_setting).fit_transform(multi), expected
    )
    pd.testing.assert_frame_equal(
        RadiomicsExtractor(("ap",), with_setting, label=2).fit_transform(multi), expected
    )
    with pytest.raises(ValueError, match="disagree"):
        RadiomicsExtractor(("ap",), with_setting, label=1).fit(multi)


# ------------------------------------------------------------------------------------ rings
def _ring_case(spacing=(0.7, 0.9, 2.5)):
    rng = np.random.default_rng(3)
    array = np.zeros((14, 40, 40), dtype=np.float32)  # air around a body
    array[:, 4:36, 4:30] = rng.normal(100, 5, size=(14, 32, 26))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    tumour = np.zeros(array.shape, dtype=np.uint8)
    tumour[5:9, 15:22, 20:27] = 1  # near the body's edge (x = 30): the ring leaves the body
    mask = sitk.GetImageFromArray(tumour)
    mask.CopyInformation(image)
    return image, mask, array > 50, tumour.astype(bool)


def test_ring_geometry_in_mm_disjoint_and_on_the_grid():
    image, mask, body, tumour = _ring_case()
    ring = sitk.GetArrayFromImage(ring_mask(image, mask, 5.0)).astype(bool)
    distance = ndimage.distance_transform_edt(~tumour, sampling=image.GetSpacing()[::-1])
    near = np.abs(distance - 5.0) < 1e-3  # voxels exactly at 5 mm: either side is right
    expected = (distance <= 5.0) & ~tumour
    assert np.array_equal(ring[~near], expected[~near])
    assert not (ring & tumour).any()
    # not clipped to the body: a threshold on a crop without air would cut tissue out
    assert (ring & ~body).any()
    # thickness in mm, not voxels: 2 slices (2.5 mm) across, 7 voxels (0.7 mm) along x
    z, _, x = np.nonzero(ring)
    assert z.min() == 5 - 2 and z.max() == 8 + 2
    assert x.min() == 20 - 7


def test_ring_columns_cache_and_default_unchanged(tables, tmp_path):
    binary = tables[1]
    regions = ("tumour", "ring2mm")
    step = RadiomicsExtractor(("ap", "pvp"), PARAMS, regions=regions, cache_dir=tmp_path)
    names = list(step.get_feature_names_out())
    assert names == [
        f"{p}_{region}{n}"
        for p in ("ap", "pvp")
        for region in ("", "ring2mm_")
        for n in feature_names(PARAMS)
    ]
    tumour = list(RadiomicsExtractor(("ap", "pvp"), PARAMS).get_feature_names_out())
    features = step.fit_transform(binary)
    assert list(features.columns) == names
    assert step.cache_misses_ == 8 and step.cache_hits_ == 0
    again = RadiomicsExtractor(("ap", "pvp"), PARAMS, regions=regions, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(again.fit_transform(binary), features)
    assert again.cache_hits_ == 8 and again.cache_misses_ == 0
    default = RadiomicsExtractor(("ap", "pvp"), PARAMS, cache_dir=tmp_path).fit_transform(binary)
    pd.testing.assert_frame_equal(default, features[tumour])
    assert (features["ap_ring2mm_original_shape_VoxelVolume"] > 0).all()
    assert not np.allclose(
        features["ap_ring2mm_original_firstorder_Mean"], features["ap_original_firstorder_Mean"]
    )


@pytest.mark.parametrize(
    "bad", ["ring", "ring0mm", "ring5.0mm", "peri5mm", ("tumour", "tumour"), "tumour", ()]
)
def test_bad_regions_refused(bad):
    with pytest.raises((ValueError, TypeError), match="region"):
        RadiomicsExtractor(regions=bad).get_feature_names_out()
