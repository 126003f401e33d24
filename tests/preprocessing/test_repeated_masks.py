"""Repeated ROIs (a second reader's, a second session's masks) through N4Resampler and the cropper."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.exceptions import SkippedCaseWarning
from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler

SIZE = (24, 24, 12)  # x, y, z
SPACING = (1.5, 1.5, 3.0)


def _image(seed):
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.uniform(100, 200, size=SIZE[::-1]).astype(np.float32))
    image.SetSpacing(SPACING)
    image.SetOrigin((-10.0, 4.0, 2.5))
    return image


def _ball(image, centre, radius_mm):
    """A ball (radius in mm) on `image`'s grid, as a uint8 mask."""
    z, y, x = np.indices(SIZE[::-1], dtype=np.float64)
    cx, cy, cz = centre
    distance = np.sqrt(
        ((x - cx) * SPACING[0]) ** 2 + ((y - cy) * SPACING[1]) ** 2 + ((z - cz) * SPACING[2]) ** 2
    )
    mask = sitk.GetImageFromArray((distance <= radius_mm).astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def _table(n=3, with_sets=True):
    """Cohort of `n` patients, phase "ap"; reader2 on all but the last, session2 on the first."""
    ids = [f"P{i}" for i in range(n)]
    images = [_image(i) for i in range(n)]
    X = pd.DataFrame(
        {
            "ap": images,
            "ap_mask": [_ball(im, (12, 12, 6), 6.0) for im in images],
            "age": np.arange(n) + 50,
        },
        index=pd.Index(ids, name="patient_id"),
    )
    if with_sets:
        X["ap_mask_reader2"] = [_ball(im, (12.6, 11.5, 6), 7.0) for im in images[:-1]] + [None]
        X["ap_mask_session2"] = [_ball(images[0], (12.3, 12, 6), 6.3)] + [None] * (n - 1)
    return X


def _step(**kwargs):
    settings = dict(phases=("ap",), n_iterations=(3,), shrink_factor=2, margin_mm=6.0, spacing=2.0)
    return N4Resampler(**{**settings, **kwargs})


def _array(cell):
    image = sitk.ReadImage(cell) if isinstance(cell, str) else cell
    return sitk.GetArrayFromImage(image)


def _dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_n4_carries_repeated_masks_on_the_image_grid():
    X = _table()
    Xt = _step().fit_transform(X)
    assert list(Xt.columns) == ["ap", "ap_mask", "age", "ap_mask_reader2", "ap_mask_session2"]
    assert Xt["ap_mask_reader2"].isna().tolist() == [False, False, True]
    assert Xt["ap_mask_session2"].isna().tolist() == [False, True, True]
    for pid in ("P0", "P1"):
        image, primary, reader = Xt.loc[pid, ["ap", "ap_mask", "ap_mask_reader2"]]
        for mask in (primary, reader):
            assert mask.GetSize() == image.GetSize()
            assert mask.GetSpacing() == image.GetSpacing()
            assert mask.GetOrigin() == image.GetOrigin()
            assert mask.GetDirection() == image.GetDirection()
            assert mask.GetPixelID() == sitk.sitkUInt8
        assert 0.6 < _dice(_array(primary), _array(reader)) < 0.95
    assert 0.8 < _dice(_array(Xt.loc["P0", "ap_mask"]), _array(Xt.loc["P0", "ap_mask_session2"]))
    # the primary output does not depend on the repeated masks
    plain = _step().fit_transform(_table(with_sets=False))
    for pid in X.index:
        for column in ("ap", "ap_mask"):
            np.testing.assert_array_equal(
                _array(Xt.loc[pid, column]), _array(plain.loc[pid, column])
            )
    assert list(_step().fit(X).get_feature_names_out()) == list(Xt.columns)


def test_n4_repeated_mask_equal_to_primary_gives_the_primary_output():
    X = _table(with_sets=False)
    X["mask_reader2"] = list(X["ap_mask"])  # a shared column: one per phase in the output
    Xt = _step().fit_transform(X)
    assert "mask_reader2" not in Xt.columns
    for pid in X.index:
        np.testing.assert_array_equal(
            _array(Xt.loc[pid, "ap_mask_reader2"]), _array(Xt.loc[pid, "ap_mask"])
        )


def test_n4_cache_key_holds_the_repeated_masks(tmp_path):
    X = _table()
    step = _step(cache_dir=tmp_path)
    first = step.fit_transform(X)
    assert (step.cache_hits_, step.cache_misses_) == (0, 3)
    assert all(isinstance(c, str) for c in first["ap_mask_reader2"].iloc[:2])
    step.transform(X)
    assert (step.cache_hits_, step.cache_misses_) == (3, 0)
    changed = X.copy()
    changed.at["P1", "ap_mask_reader2"] = _ball(X.at["P1", "ap"], (12, 12, 6), 4.0)
    again = step.transform(changed)
    assert (step.cache_hits_, step.cache_misses_) == (2, 1)
    assert (
        _array(again.at["P1", "ap_mask_reader2"]).sum()
        < _array(first.at["P1", "ap_mask_reader2"]).sum()
    )
    # a patient without repeated masks has the key of a table without such columns
    step.transform(_table(with_sets=False))
    assert (step.cache_hits_, step.cache_misses_) == (1, 2)


def test_n4_skip_blanks_repeated_cells():
    X = _table()
    constant = sitk.Image(X.at["P0", "ap"])
    constant *= 0
    X.at["P0", "ap"] = constant + 5.0
    step = _step(on_error="skip")
    with pytest.warns(SkippedCaseWarning):
        Xt = step.fit_transform(X)
    assert step.skipped_.index.tolist() == ["P0"]
    assert Xt.loc["P0", ["ap", "ap_mask", "ap_mask_reader2", "ap_mask_session2"]].isna().all()
    assert Xt.loc["P1", ["ap", "ap_mask", "ap_mask_reader2"]].notna().all()


def test_n4_refuses_a_repeated_roi_beyond_the_crop():
    X = _table()
    X.at["P1", "ap_mask_reader2"] = _ball(X.at["P1", "ap"], (2, 12, 6), 2.0)  # far from the ROI
    with pytest.raises(CohortError, match="outside the crop box") as info:
        _step().fit_transform(X)
    assert (info.value.patient_id, info.value.column) == ("P1", "ap_mask_reader2")
    _step(margin_mm=None).fit_transform(X)  # the whole volume: nothing is cut


def test_n4_refuses_a_repeated_mask_off_the_grid():
    X = _table()
    moved = sitk.Image(X.at["P0", "ap_mask_reader2"])
    moved.SetSpacing((1.5, 1.5, 2.0))
    X.at["P0", "ap_mask_reader2"] = moved
    with pytest.raises(CohortError, match="grid") as info:
        _step().fit_transform(X)
    assert (info.value.patient_id, info.value.column) == ("P0", "ap_mask_reader2")


def test_cropper_mask_set():
    X = _table()
    cropper = LargestSliceCropper(phases=("ap",), margin=2, size=16, normalization=None)
    primary = cropper.fit_transform(X.iloc[:2])
    reader = cropper.set_params(mask_set="reader2").fit_transform(X.iloc[:2])
    assert reader.shape == primary.shape and not np.array_equal(reader, primary)
    same = X.iloc[:2].assign(ap_mask_reader2=list(X["ap_mask"].iloc[:2]))
    np.testing.assert_array_equal(cropper.transform(same), primary)
    with pytest.raises(CohortError, match="reader2") as info:
        cropper.transform(X)  # P2 has no reader2 mask
    assert (info.value.patient_id, info.value.column) == ("P2", "ap_mask_reader2")
    cropper.set_params(on_error="skip")
    with pytest.warns(SkippedCaseWarning):
        crops = cropper.transform(X)
    assert np.isnan(crops[2]).all() and not np.isnan(crops[:2]).any()
    assert cropper.skipped_.loc["P2", "column"] == "ap_mask_reader2"
    with pytest.raises(CohortError, match="reader3"):
        cropper.set_params(mask_set="reader3").fit(X)
    with pytest.raises(ValueError, match="mask_set"):
        cropper.set_params(mask_set="bad name").fit(X)
