"""The synthetic cohort's repeated ROIs: a second reader's and a second session's masks."""

import filecmp
import hashlib

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from p53radiomics.datasets import REPEATED_MASK_SETS, make_synthetic_cohort
from p53radiomics.datasets._synthetic import repeated_mask
from p53radiomics.io import mask_set_patients, mask_sets, read_cohort_csv, validate_cohort

REPEATED = [f"{p}_mask_{s}" for s in ("reader2", "session2") for p in ("ap", "pvp", "dp")]


def _digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _mask(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(path)).astype(bool)


def test_repeated_masks_columns_and_no_change_to_the_other_files(tmp_path):
    X0, _ = make_synthetic_cohort(tmp_path / "none", n_patients=4, voxel_scale=3.0, n_repeated=0)
    X2, _ = make_synthetic_cohort(tmp_path / "two", n_patients=4, voxel_scale=3.0, n_repeated=2)
    assert not mask_sets(X0.columns)
    assert list(X2.columns) == [*X0.columns[:6], *REPEATED, *X0.columns[6:]]
    # the default: the study's 30 of 320, none for so small a cohort
    Xd, _ = make_synthetic_cohort(tmp_path / "default", n_patients=4, voxel_scale=3.0)
    assert list(Xd.columns) == list(X0.columns)
    assert _digests(tmp_path / "default") == _digests(tmp_path / "none")
    # the extra draws leave the images, primary masks and clinical values as they were
    none, two = _digests(tmp_path / "none"), _digests(tmp_path / "two")
    assert {k: v for k, v in two.items() if "_mask_" not in k and k != "cohort.csv"} == {
        k: v for k, v in none.items() if k != "cohort.csv"
    }
    table0 = pd.read_csv(tmp_path / "none" / "cohort.csv", dtype=str)
    table2 = pd.read_csv(tmp_path / "two" / "cohort.csv", dtype=str)
    pd.testing.assert_frame_equal(table2.drop(columns=REPEATED), table0)
    assert (table2[REPEATED].notna().sum(axis=1).isin([0, 6])).all()
    assert table2[REPEATED].notna().all(axis=1).sum() == 2
    # the table reads back and validates; both sets are held by the same 2 patients
    X, y = read_cohort_csv(tmp_path / "two" / "cohort.csv", label="p53")
    validate_cohort(X)
    for name in REPEATED_MASK_SETS:
        assert len(mask_set_patients(X, name)) == 2
    with pytest.raises(ValueError, match="n_repeated"):
        make_synthetic_cohort(tmp_path / "bad", n_patients=2, voxel_scale=3.0, n_repeated=3)


def test_repeated_masks_are_reproducible(tmp_path):
    for name in ("a", "b"):
        make_synthetic_cohort(
            tmp_path / name, n_patients=3, random_state=5, voxel_scale=3.0, n_repeated=2
        )
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert any("_mask_reader2" in n for n in names)
    match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "a" / "images", tmp_path / "b" / "images", names, shallow=False
    )
    assert (mismatch, errors) == ([], [])
    assert filecmp.cmp(tmp_path / "a" / "cohort.csv", tmp_path / "b" / "cohort.csv", shallow=False)


def test_second_session_agrees_better_than_second_reader(tmp_path):
    X, _ = make_synthetic_cohort(tmp_path, n_patients=4, voxel_scale=1.5, n_repeated=4)
    dice = {name: [] for name in REPEATED_MASK_SETS}
    for pid in X.index:
        for phase in ("ap", "pvp", "dp"):
            primary = _mask(X.loc[pid, f"{phase}_mask"])
            for name in dice:
                other = _mask(X.loc[pid, f"{phase}_mask_{name}"])
                dice[name].append(2 * (primary & other).sum() / (primary.sum() + other.sum()))
    assert 0.6 < np.mean(dice["reader2"]) < np.mean(dice["session2"]) < 0.99


@pytest.mark.parametrize("name", list(REPEATED_MASK_SETS))
def test_boundary_shift_in_range(name):
    """Measured with the primary ROI's distance map at the repeated ROI's boundary, on a fine grid."""
    spacing = (0.5, 0.25, 0.25)  # z, y, x (mm)
    shape = (40, 96, 96)
    geo = np.meshgrid(
        *((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)),
        indexing="ij",
        sparse=True,
    )
    radii = np.array([6.0, 8.0, 8.0])
    tumour = (np.zeros(3), radii, 0.0, np.zeros(6), False)
    z, y, x = geo
    primary = np.broadcast_to(((z / 6.0) ** 2 + (y / 8.0) ** 2 + (x / 8.0) ** 2) < 1, shape)
    shifts = []
    for seed in range(3):
        other = repeated_mask(
            geo, spacing, tumour, REPEATED_MASK_SETS[name], np.random.default_rng(seed)
        )
        assert other.any() and not np.array_equal(other.astype(bool), primary)
        distance = ndimage.distance_transform_edt(~primary, sampling=spacing) - (
            ndimage.distance_transform_edt(primary, sampling=spacing)
        )
        # boundary voxels of the repeated ROI, in-plane, away from the poles of the ellipsoid
        edge = other.astype(bool) & ~ndimage.binary_erosion(other, structure=np.ones((1, 3, 3)))
        edge &= np.abs(np.broadcast_to(z, shape)) < 3.0
        shifts.append(np.abs(distance[edge]))
        by_slice = [
            np.median(np.abs(distance[k][edge[k]])) for k in range(shape[0]) if edge[k].any()
        ]
        assert np.std(by_slice) > 0.02  # the shift varies from slice to slice
    low, high = REPEATED_MASK_SETS[name]
    shifts = np.concatenate(shifts)
    tolerance = 0.5  # two fine voxels: the voxelised outlines and the rays' obliquity
    assert low - tolerance < np.percentile(shifts, 5)
    assert np.percentile(shifts, 95) < high + tolerance
    assert np.percentile(shifts, 95) - np.percentile(shifts, 5) > 0.3  # it varies along the outline
    assert 0.5 <= low < high <= 2.0
