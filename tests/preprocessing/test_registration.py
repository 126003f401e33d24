"""N4Resampler(mask_phase=, registration=): one shared mask for every phase (issue 16 item 5)."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from p53radiomics import CohortError
from p53radiomics.exceptions import SkippedCaseWarning
from p53radiomics.preprocessing import N4Resampler

SPACING = (1.5, 1.5, 3.0)
SIZE = (40, 40, 20)  # x, y, z: 60 x 60 x 60 mm
CENTRE = np.array([1.0, -2.0, 0.5])  # the tumour's centre (mm)
RADIUS = 9.0
SHIFT = np.array([2.0, -1.5, 2.5])  # the arterial phase's anatomy moved by -SHIFT (mm)
# bias correction and resampling off: the tests are about where the mask lands
FAST = {"bias_correction": False, "spacing": None, "margin_mm": None}  # one grid: Dice by voxel


def _scene(points, seed=0):
    """A textured abdomen-like scene at physical `points` (n, 3): smooth blobs plus a tumour."""
    rng = np.random.default_rng(seed)
    value = np.full(len(points), 100.0)
    for _ in range(40):
        centre = rng.uniform(-30, 30, size=3)
        width = rng.uniform(3.0, 8.0)
        value += rng.uniform(-40, 40) * np.exp(-((points - centre) ** 2).sum(1) / (2 * width**2))
    inside = np.linalg.norm(points - CENTRE, axis=1)
    return value + 60.0 / (1.0 + np.exp((inside - RADIUS) / 0.7))


def _grid_points(size=SIZE, spacing=SPACING, origin=None):
    origin = -np.asarray(size) * spacing / 2 if origin is None else np.asarray(origin)
    z, y, x = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    return origin + index * np.asarray(spacing), origin


def _phase(shift=(0.0, 0.0, 0.0), size=SIZE, spacing=SPACING, origin=None):
    """(image, true mask) of a phase whose anatomy lies moved by ``-shift`` mm."""
    points, origin = _grid_points(size, spacing, origin)
    moved = points + np.asarray(shift)
    shape = size[::-1]
    image = sitk.GetImageFromArray(_scene(moved).reshape(shape).astype(np.float32))
    inside = (np.linalg.norm(moved - CENTRE, axis=1) < RADIUS).reshape(shape)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    for im in (image, mask):
        im.SetSpacing(spacing)
        im.SetOrigin(tuple(float(o) for o in origin))
    return image, mask


def _tables(n=2):
    """The shared-mask table (the portal phase's mask for both) and the table of own masks."""
    pvp, pvp_mask = _phase()
    ap, ap_mask = _phase(SHIFT)
    index = [f"P{i}" for i in range(1, n + 1)]
    own = pd.DataFrame(
        {"ap": [ap] * n, "ap_mask": [ap_mask] * n, "pvp": [pvp] * n, "pvp_mask": [pvp_mask] * n},
        index=index,
    )
    shared = own.drop(columns=["ap_mask", "pvp_mask"]).assign(mask=[pvp_mask] * n)
    return shared, own


def _dice(a, b):
    a, b = sitk.GetArrayFromImage(a) > 0, sitk.GetArrayFromImage(b) > 0
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def tables():
    return _tables()


@pytest.fixture(scope="module")
def registered(tables):
    step = N4Resampler(("ap", "pvp"), mask_phase="pvp", registration="rigid", **FAST)
    return step, step.fit_transform(tables[0])


def test_rigid_registration_recovers_a_known_shift_and_improves_the_dice(tables, registered):
    shared, own = tables
    step, out = registered
    truth = N4Resampler(("ap", "pvp"), **FAST).fit_transform(own)
    carried = N4Resampler(("ap", "pvp"), mask_phase="pvp", **FAST).fit_transform(shared)
    row = step.registrations_.loc["P1"]  # one carried phase: one row
    found = row[["translation_x_mm", "translation_y_mm", "translation_z_mm"]].to_numpy(float)
    # reference points map to -SHIFT in the arterial phase; within a fifth of the smallest voxel
    np.testing.assert_allclose(found, -SHIFT, atol=0.2 * min(SPACING))
    assert row["rotation_deg"] < 0.5 and row["reference"] == "pvp" and row["seconds"] > 0
    assert list(step.registrations_.index) == ["P1", "P2"]
    assert list(step.registrations_["phase"]) == ["ap", "ap"]
    before = _dice(carried.at["P1", "ap_mask"], truth.at["P1", "ap_mask"])
    after = _dice(out.at["P1", "ap_mask"], truth.at["P1", "ap_mask"])
    assert before < 0.8 and after > 0.93
    # the reference phase keeps the mask as drawn, registration or not
    assert _dice(out.at["P1", "pvp_mask"], truth.at["P1", "pvp_mask"]) == 1.0


def test_defaults_and_the_reference_phase_keep_their_output_and_cache_keys(tmp_path, tables):
    shared, _ = tables
    cache = tmp_path / "cache"
    default = N4Resampler(("ap", "pvp"), cache_dir=cache, **FAST)
    plain = default.fit_transform(shared)
    assert default.registrations_.empty
    assert N4Resampler(("ap", "pvp"), **FAST).get_params() == {
        **default.get_params(),
        "cache_dir": None,
    }
    # one grid for both phases: carried by coordinates, the mask is the shared one, bit for bit
    carried = N4Resampler(("ap", "pvp"), mask_phase="pvp", cache_dir=cache, **FAST)
    out = carried.fit_transform(shared)
    assert (carried.cache_hits_, carried.cache_misses_) == (2, 2)  # pvp: the default's entries
    for column in ("ap", "ap_mask", "pvp_mask"):
        for pid in shared.index:
            a, b = sitk.ReadImage(plain.at[pid, column]), sitk.ReadImage(out.at[pid, column])
            assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    rigid = N4Resampler(("ap", "pvp"), mask_phase="pvp", registration="rigid", cache_dir=cache)
    rigid.set_params(**FAST).fit_transform(shared)
    assert (rigid.cache_hits_, rigid.cache_misses_) == (2, 2)  # registration changes the ap key
    first = rigid.registrations_.copy()
    rigid.transform(shared)
    assert (rigid.cache_hits_, rigid.cache_misses_) == (4, 0)
    # read back with the entry (P1 and P2 have the same images: one entry, one time taken)
    columns = [c for c in first.columns if c != "seconds"]
    pd.testing.assert_frame_equal(rigid.registrations_[columns], first[columns])


def test_registrations_are_kept_in_a_model_file_on_request(tmp_path, registered):
    from p53radiomics import load_model, save_model

    step, _ = registered
    save_model(step, tmp_path / "step.p53", keep_case_records=True)
    loaded = load_model(tmp_path / "step.p53")
    pd.testing.assert_frame_equal(loaded.registrations_, step.registrations_)
    save_model(step, tmp_path / "shared.p53")  # by default: no patient's record
    assert not hasattr(load_model(tmp_path / "shared.p53"), "registrations_")


def test_registration_is_deterministic_and_independent_of_n_jobs(tables, registered):
    step, out = registered
    again = N4Resampler(("ap", "pvp"), mask_phase="pvp", registration="rigid", n_jobs=2, **FAST)
    out2 = again.fit_transform(tables[0])
    for pid in out.index:
        a = sitk.GetArrayFromImage(out.at[pid, "ap_mask"])
        assert np.array_equal(a, sitk.GetArrayFromImage(out2.at[pid, "ap_mask"]))
    columns = ["translation_x_mm", "translation_y_mm", "translation_z_mm", "rotation_deg"]
    pd.testing.assert_frame_equal(again.registrations_[columns], step.registrations_[columns])


def test_a_mask_drawn_on_another_grid_is_carried_by_physical_coordinates():
    pvp, pvp_mask = _phase()
    ap, ap_mask = _phase(size=(30, 30, 24), spacing=(2.0, 2.0, 2.5))  # same anatomy, other grid
    X = pd.DataFrame({"ap": [ap], "pvp": [pvp], "mask": [pvp_mask]}, index=["P1"])
    with pytest.raises(CohortError, match="'P1'.*column 'mask'"):
        N4Resampler(("ap", "pvp"), **FAST).fit_transform(X)  # as before: not on ap's grid
    out = N4Resampler(("ap", "pvp"), mask_phase="pvp", **FAST).fit_transform(X)
    truth = N4Resampler(("ap",), **FAST).fit_transform(X.assign(ap_mask=[ap_mask]))
    assert _dice(out.at["P1", "ap_mask"], truth.at["P1", "ap_mask"]) > 0.85  # partial voxels


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"mask_phase": "dp"}, r"mask_phase='dp' is not one of phases=\('ap', 'pvp'\)"),
        ({"registration": "rigid"}, "registration='rigid' needs mask_phase"),
        ({"mask_phase": "pvp", "registration": "affine"}, "registration"),
        ({"mask_phase": 3}, "mask_phase"),
    ],
)
def test_bad_parameters_are_refused_in_fit_and_transform(tables, params, match):
    step = N4Resampler(("ap", "pvp"), **params, **FAST)
    with pytest.raises(ValueError, match=match):
        step.fit(tables[0])
    with pytest.raises(ValueError, match=match):
        step.transform(tables[0])


def test_mask_phase_without_a_shared_mask_is_refused(tables):
    step = N4Resampler(("ap", "pvp"), mask_phase="pvp", **FAST)
    with pytest.raises(ValueError, match="no phase uses the shared 'mask' column"):
        step.fit_transform(tables[1])


def _with_ap(tables, ap):
    shared = tables[0].copy()
    shared["ap"] = [ap, shared.at["P2", "ap"]]
    return shared


def _flat_around_the_tumour(n=2):
    """A wide field of view whose arterial phase is flat around the tumour, textured elsewhere."""
    wide = {"size": (100, 100, 40)}
    pvp, pvp_mask = _phase(**wide)
    ap, _ = _phase(SHIFT, **wide)
    flat = sitk.Image(ap)
    flat[15:85, 15:85, 3:37] = 100.0  # the ROI's box grown by 30 mm, and more
    index = [f"P{i}" for i in range(1, n + 1)]
    return pd.DataFrame({"ap": [flat, ap], "pvp": [pvp] * n, "mask": [pvp_mask] * n}, index=index)


def test_a_constant_region_or_no_overlap_is_a_cohort_error(tables):
    step = N4Resampler(("ap", "pvp"), mask_phase="pvp", registration="rigid", **FAST)
    with pytest.raises(CohortError, match="'P1', column 'ap'.*constant in the region"):
        step.fit_transform(_flat_around_the_tumour())
    far = sitk.Image(tables[0].at["P1", "ap"])
    far.SetOrigin((500.0, 0.0, 0.0))
    with pytest.raises(CohortError, match="'P1', column 'ap'.*do not overlap"):
        step.fit_transform(_with_ap(tables, far))
    unregistered = N4Resampler(("ap", "pvp"), mask_phase="pvp", **FAST)
    with pytest.raises(CohortError, match="'P1', column 'mask'.*falls outside"):
        unregistered.fit_transform(_with_ap(tables, far))


def test_an_absurd_registration_is_refused():
    pvp, pvp_mask = _phase()
    ap, _ = _phase((0.0, 0.0, 14.0))  # 14 mm: no breath-hold moves the liver that far
    X = pd.DataFrame({"ap": [ap], "pvp": [pvp], "mask": [pvp_mask]}, index=["P1"])
    step = N4Resampler(("ap", "pvp"), mask_phase="pvp", registration="rigid", **FAST)
    with pytest.raises(CohortError, match=r"'P1', column 'ap'.*refused: it moves the ROI by 1\d"):
        step.fit_transform(X)


def test_a_failed_registration_is_skipped_under_on_error_skip():
    step = N4Resampler(
        ("ap", "pvp"), mask_phase="pvp", registration="rigid", on_error="skip", **FAST
    )
    with pytest.warns(SkippedCaseWarning):
        out = step.fit_transform(_flat_around_the_tumour())
    assert list(step.skipped_.index) == ["P1"] and step.skipped_.at["P1", "column"] == "ap"
    assert out.loc["P1", ["ap", "ap_mask", "pvp", "pvp_mask"]].isna().all()
    assert out.at["P2", "ap_mask"] is not None
    assert list(step.registrations_.index) == ["P2"]
