"""Synthetic sites (issue 18 items 3-4): a cohort drawn from given scanners, external scanners
absent from the development cohort's, their effects, bad arguments, the default cohort's files
unchanged, and the clinical-size field of view's geometry."""

import filecmp
import hashlib
import math

import numpy as np
import pytest
import SimpleITK as sitk

from p53radiomics.datasets import (
    EXTERNAL_SCANNERS,
    FIELDS_OF_VIEW,
    SCANNERS,
    Scanner,
    make_synthetic_cohort,
)
from p53radiomics.datasets._scanners import acquire, volume_geometry

SMALL = {"n_patients": 3, "random_state": 5, "voxel_scale": 3.0}
# The default cohort of SMALL (decoded voxels, spacing and origin of every file, so no zlib
# version enters it; and the cohort table): a change to the generator changes them, on purpose.
DEFAULT_IMAGES_SHA256 = "084340991f6016240d43f68bd840500fdafd6b100202e42277f8d0753f74f857"
DEFAULT_CSV_SHA256 = "a74f295107cc53b86e4051013d77ebbc836b02a416f4b1a444ac4285b5430bc3"


def _images_digest(directory):
    digest = hashlib.sha256()
    for path in sorted((directory / "images").iterdir()):
        image = sitk.ReadImage(str(path))
        digest.update(path.name.encode())
        digest.update(sitk.GetArrayFromImage(image).tobytes())
        digest.update(repr((image.GetSpacing(), image.GetOrigin())).encode())
    return digest.hexdigest()


def _same_files(a, b):
    names = sorted(p.name for p in (a / "images").iterdir())
    assert names == sorted(p.name for p in (b / "images").iterdir())
    _, mismatch, errors = filecmp.cmpfiles(a / "images", b / "images", names, shallow=False)
    return not mismatch and not errors and filecmp.cmp(a / "cohort.csv", b / "cohort.csv", False)


def test_default_files_are_pinned_and_the_options_defaults_give_them(tmp_path):
    make_synthetic_cohort(tmp_path / "a", **SMALL)
    assert _images_digest(tmp_path / "a") == DEFAULT_IMAGES_SHA256
    digest = hashlib.sha256((tmp_path / "a" / "cohort.csv").read_bytes()).hexdigest()
    assert digest == DEFAULT_CSV_SHA256
    explicit = {"n_scanners": 7, "scanners": None, "field_of_view": "default"}
    make_synthetic_cohort(tmp_path / "b", **SMALL, **explicit)
    assert _same_files(tmp_path / "a", tmp_path / "b")


def test_scanners_by_object_and_by_name_give_the_files_of_n_scanners(tmp_path):
    make_synthetic_cohort(tmp_path / "n", **SMALL, n_scanners=3)
    make_synthetic_cohort(tmp_path / "objects", **SMALL, scanners=SCANNERS[:3])
    make_synthetic_cohort(tmp_path / "names", **SMALL, scanners=["S1", "S2", "S3"], n_scanners=3)
    assert _same_files(tmp_path / "n", tmp_path / "objects")
    assert _same_files(tmp_path / "n", tmp_path / "names")


def test_external_scanners_are_unseen_and_used(tmp_path):
    external = {s.name for s in EXTERNAL_SCANNERS}
    assert len(external) == len(EXTERNAL_SCANNERS) >= 2
    assert not external & {s.name for s in SCANNERS}
    assert all(s not in SCANNERS for s in EXTERNAL_SCANNERS)
    X, _ = make_synthetic_cohort(tmp_path, n_patients=8, random_state=1, voxel_scale=3.0,
                                 scanners=EXTERNAL_SCANNERS)  # fmt: skip
    assert set(X["scanner"]) <= external and X["scanner"].nunique() >= 2
    by_name = {s.name: s for s in EXTERNAL_SCANNERS}
    for pid, row in X.iterrows():
        image = sitk.ReadImage(row["pvp"])
        expected = np.asarray(by_name[row["scanner"]].spacing) * 3.0
        np.testing.assert_allclose(image.GetSpacing(), expected, err_msg=pid)
        assert sitk.GetArrayViewFromImage(sitk.ReadImage(row["pvp_mask"])).any(), pid
    mixed, _ = make_synthetic_cohort(tmp_path / "mixed", n_patients=6, voxel_scale=3.0,
                                     scanners=["S2", EXTERNAL_SCANNERS[1]])  # fmt: skip
    assert set(mixed["scanner"]) <= {"S2", "E2"}


def _acquired(scanner, signal, seed=0):
    bias = np.ones(signal.shape, dtype=np.float32)
    return acquire(signal, bias, scanner, 0, 0.5, (3.0, 1.0, 1.0), np.random.default_rng(seed))


def _lag1(values, axis):
    values = values - values.mean()
    a, b = np.moveaxis(values, axis, 0)[1:], np.moveaxis(values, axis, 0)[:-1]
    return float((a * b).mean() / values.var())


def test_scanner_effects_of_the_new_settings():
    plain = Scanner("X", (1.0, 1.0, 3.0), 1000.0, 0.0, 0.1, 0.0)
    flat = np.full((8, 48, 48), 1.0, dtype=np.float32)
    white = _acquired(plain, flat).astype(float)
    assert abs(_lag1(white, 2)) < 0.1
    correlated = _acquired(Scanner(**{**plain.__dict__, "noise_correlation": 2.0}), flat)
    assert _lag1(correlated.astype(float), 2) > 0.5
    sharp = _acquired(Scanner(**{**plain.__dict__, "kernel": 0.8}), flat).astype(float)
    smooth = _acquired(Scanner(**{**plain.__dict__, "kernel": -1.0}), flat).astype(float)
    assert sharp.std() > 1.2 * white.std() and smooth.std() < 0.6 * white.std()
    # partial volume: a thick slice spreads a one-slice structure through plane
    quiet = {**plain.__dict__, "noise": 0.0}
    slab = np.zeros((9, 8, 8), dtype=np.float32)
    slab[4] = 1.0
    thin = _acquired(Scanner(**quiet), slab)[:, 4, 4].astype(float)
    thick = _acquired(Scanner(**{**quiet, "slice_thickness": 9.0}), slab)[:, 4, 4].astype(float)
    assert thick[3] / thick[4] > 2 * thin[3] / thin[4]
    # enhancement: the signal above the body's level (0.5) doubles, the rest is unchanged
    levels = np.array([0.3, 1.0, 2.0], dtype=np.float32).reshape(3, 1, 1) * np.ones((3, 4, 4))
    gained = _acquired(Scanner(**{**quiet, "psf": 0.0, "enhancement": (2.0, 1.0, 1.0)}),
                       levels.astype(np.float32))[:, 0, 0]  # fmt: skip
    np.testing.assert_allclose(gained, [300, 1500, 3500], atol=1)


def test_development_scanners_differ_in_what_preprocessing_keeps():
    kernels = {s.kernel for s in SCANNERS}
    assert min(kernels) < 0 < max(kernels) and len(kernels) >= 5  # smoothing and sharpening
    assert sum(s.noise_correlation > 0 for s in SCANNERS) >= 3
    assert any(s.slice_thickness is not None for s in SCANNERS)
    assert len({s.enhancement for s in SCANNERS}) >= 5


def _high_frequency(image, mask):
    """Mean absolute in-plane step between neighbouring voxels of the ROI, in units of its SD."""
    values, inside = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask).astype(bool)
    pairs = inside[:, :, 1:] & inside[:, :, :-1]
    steps = np.abs(np.diff(values, axis=2))[pairs]
    return float(steps.mean() / values[inside].std())


def _preprocessed_high_frequency(directory, kernel):
    """Each tumour's high-frequency measure after N4Resampler, on an S4 of that kernel."""
    from dataclasses import replace

    from p53radiomics import N4Resampler

    scanner = replace(SCANNERS[3], name="K", kernel=kernel)
    X, _ = make_synthetic_cohort(directory, n_patients=4, random_state=2, scanners=[scanner],
                                 n_repeated=0)  # fmt: skip
    step = N4Resampler(phases=("pvp",), spacing=2.0, bias_correction=False)
    Xt = step.fit_transform(X[["pvp", "pvp_mask"]])
    return np.array([_high_frequency(row["pvp"], row["pvp_mask"]) for _, row in Xt.iterrows()])


def test_the_reconstruction_kernel_survives_preprocessing(tmp_path):
    """The same patients (same seed, same grid, same noise) on a smoothing and on a sharpening
    scanner, as S5 and S6 are: every tumour's texture still differs after N4, resampling to 2-mm
    voxels and z-scoring, a scanner effect harmonisation has to remove."""
    smooth = _preprocessed_high_frequency(tmp_path / "smooth", -1.0)
    plain = _preprocessed_high_frequency(tmp_path / "plain", 0.0)
    sharp = _preprocessed_high_frequency(tmp_path / "sharp", 0.9)
    assert (smooth < plain).all() and (plain < sharp).all(), (smooth, plain, sharp)
    assert (sharp > 1.2 * smooth).all(), (smooth, sharp)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"scanners": "S1"}, TypeError, "sequence of Scanner"),
        ({"scanners": SCANNERS[0]}, TypeError, "sequence of Scanner"),
        ({"scanners": [3]}, TypeError, "holds 3"),
        ({"scanners": []}, ValueError, "non-empty"),
        ({"scanners": ["S1", "S1"]}, ValueError, "distinct"),
        ({"scanners": ["S1", "Z9"]}, ValueError, "unknown scanner name 'Z9'"),
        ({"scanners": ["S1", "E1"], "n_scanners": 3}, ValueError, "conflicts"),
        ({"n_scanners": 0}, ValueError, "n_scanners"),
        ({"n_scanners": 2.5}, ValueError, "n_scanners"),
        ({"scanners": [Scanner("S1", (1.0, 1.0, 3.0), 900.0, 40.0, 0.035, 0.25)]}, ValueError,
         "differs from the built-in"),
        ({"scanners": [Scanner("Q", (1.0, 1.0), 900.0, 0.0, 0.03, 0.2)]}, ValueError,
         "'Q': invalid spacing"),
        ({"scanners": [Scanner("Q", (1.0, 1.0, 3.0), 900.0, 0.0, -0.03, 0.2)]}, ValueError,
         "'Q': invalid noise"),
        ({"scanners": [Scanner("Q", (1.0, 1.0, 3.0), 900.0, 0.0, 0.03, 0.2,
                               enhancement=(1.0, 1.0))]}, ValueError, "invalid enhancement"),
        ({"scanners": [Scanner("Q", (1.0, 1.0, 3.0), 900.0, 0.0, 0.03, 0.2,
                               slice_thickness=0.0)]}, ValueError, "invalid slice_thickness"),
        ({"field_of_view": "chest"}, ValueError, "field_of_view must be one of"),
        ({"field_of_view": None}, ValueError, "field_of_view must be one of"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_synthetic_cohort(tmp_path / "never", n_patients=2, voxel_scale=3.0, **kwargs)
    assert not (tmp_path / "never").exists()


def test_abdomen_field_of_view_geometry(tmp_path):
    fov = FIELDS_OF_VIEW["abdomen"]
    for scanner in (SCANNERS[0], SCANNERS[4], EXTERNAL_SCANNERS[1]):
        shape, spacing, origin = volume_geometry(scanner, field_of_view="abdomen")
        assert shape == (67, 419, 514) and spacing == (0.74, 0.74, 3.0)
        extent = np.array(shape[::-1]) * np.array(spacing)
        np.testing.assert_allclose(extent, fov.size, atol=3.0)
        np.testing.assert_allclose(np.array(origin) + extent / 2 - np.array(spacing) / 2, 0,
                                   atol=1e-9)  # fmt: skip
    default_shape, default_spacing, _ = volume_geometry(SCANNERS[0])
    assert default_spacing == SCANNERS[0].spacing and math.prod(default_shape) < 1e6

    X, _ = make_synthetic_cohort(tmp_path, n_patients=1, voxel_scale=6.0, field_of_view="abdomen",
                                 scanners=["E3"])  # fmt: skip
    image, mask = sitk.ReadImage(X["ap"].iloc[0]), sitk.ReadImage(X["ap_mask"].iloc[0])
    np.testing.assert_allclose(image.GetSpacing(), (4.44, 4.44, 18.0))
    assert image.GetSize() == volume_geometry(EXTERNAL_SCANNERS[2], 6.0, "abdomen")[0][::-1]
    assert mask.GetSize() == image.GetSize() and sitk.GetArrayViewFromImage(mask).any()
    body = sitk.GetArrayViewFromImage(image)[image.GetSize()[2] // 2] > 0.3 * 500
    assert 0.5 < body.mean() < 0.9  # the body fills the clinical field of view
