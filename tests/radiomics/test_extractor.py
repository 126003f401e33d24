"""Tests of p53radiomics.radiomics: RadiomicsExtractor, its parameters and its feature names.

PyRadiomics's own baselines (``shared/data/pyradiomics``) are the reference for the values; a real
abdominal MR (``shared/data/abdominal_mr``) and small synthetic tumours for the rest. Tests that use
the full default feature set run it on one small case; the others use a reduced set.
"""

import ast
import io
import logging
import re
import shutil
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.exceptions import CohortError, SkippedCaseWarning
from p53radiomics.radiomics import (
    DEFAULT_PARAMS_FILE,
    RadiomicsExtractor,
    feature_names,
    load_params,
)
from p53radiomics.utils.estimator_checks import check_image_estimator
from tests._shared_data import shared_data_dir

SHARED = shared_data_dir() or Path("/nonexistent/shared/data")
PYRADIOMICS_DATA = SHARED / "pyradiomics"
ABDOMINAL_MR = SHARED / "abdominal_mr"

# A reduced parameter set for the tests that are not about the default set: every kind of image
# (original, wavelet, LoG), a shape, first-order and texture class, few features.
SMALL_PARAMS = {
    "imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [2.0]}},
    "featureClass": {
        "shape": ["VoxelVolume", "Sphericity"],
        "firstorder": ["Mean", "Entropy", "Kurtosis"],
        "glcm": ["Idmn", "JointEntropy"],
    },
    "setting": {"binCount": 16, "preCrop": True, "normalize": True},
}
N_SMALL = 2 + 10 * 5  # shape once, then 5 features on 10 images


# --------------------------------------------------------------------------------------------------
# Synthetic tumours
# --------------------------------------------------------------------------------------------------
def _tumour(seed, *, shape=(18, 22, 22), radius=5.0, spacing=(1.0, 1.0, 1.0), zscore=True):
    """A textured sphere in a textured background, z-scored like N4Resampler's output; and its mask."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    centre = (np.asarray(shape) - 1) / 2
    zz, yy, xx = np.indices(shape)
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2
    texture = gaussian_filter(rng.normal(size=shape), 1.0)
    array = 500.0 + 120.0 * inside + 400.0 * texture
    if zscore:
        array = (array - array.mean()) / array.std()
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def _cohort(n, phases=("ap", "pvp"), *, folder=None, seed=0):
    """A cohort table of `n` patients; images in memory, or NIfTI files in `folder`."""
    data = defaultdict(list)
    for i in range(n):
        for k, phase in enumerate(phases):
            image, mask = _tumour(seed + 10 * i + k, radius=4.0 + i % 3)
            if folder is not None:
                image_path, mask_path = (
                    folder / f"P{i}_{phase}.nii.gz",
                    folder / f"P{i}_{phase}_mask.nii.gz",
                )
                sitk.WriteImage(image, str(image_path))
                sitk.WriteImage(mask, str(mask_path))
                image, mask = str(image_path), str(mask_path)
            data[phase].append(image)
            data[f"{phase}_mask"].append(mask)
    data["age"] = list(range(50, 50 + n))
    return pd.DataFrame(data, index=[f"P{i:03d}" for i in range(n)])


def _pyradiomics(params, image, mask, **settings):
    """PyRadiomics called directly: {name: value} without diagnostics."""
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # pykwalify's load_module() DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = featureextractor.RadiomicsFeatureExtractor(params, **settings)
    result = extractor.execute(image, mask)
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


# --------------------------------------------------------------------------------------------------
# Correctness against PyRadiomics's baselines
# --------------------------------------------------------------------------------------------------
_BASELINE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape")
_BASELINE_COLUMNS = [
    f"{case}{variant}"
    for case in ("brain1", "brain2", "breast1")
    for variant in (
        "",
        "_FBN",
        "_normalization",
        "_resampling",
        "_resegmentation",
        "_combined",
        "_flatRegion",
    )
]
# The baseline was written by an older release for these (DESIGN: PyRadiomics itself differs by <= 1e-3).
_MESH_FEATURES = {"SurfaceArea", "SurfaceVolumeRatio", "Sphericity", "MeshVolume"}


@pytest.mark.parametrize("column", _BASELINE_COLUMNS)
def test_reproduces_pyradiomics_baselines(column):
    """Every baseline feature of brain1, brain2, breast1 (and their non-2D variants) to 1e-6 relative."""
    if not PYRADIOMICS_DATA.is_dir():
        pytest.skip(f"PyRadiomics test data not found in {PYRADIOMICS_DATA}")
    case = column.split("_")[0]
    groups = defaultdict(dict)  # (settings, image types) -> {class: baseline column}
    for class_name in _BASELINE_CLASSES:
        table = pd.read_csv(
            PYRADIOMICS_DATA / "baseline" / f"baseline_{class_name}.csv", index_col=0
        )
        if column in table.columns:
            values = table[column]
            key = (
                values["diagnostics_Configuration_Settings"],
                values["diagnostics_Configuration_EnabledImageTypes"],
            )
            groups[key][class_name] = values
    if not groups:
        pytest.skip(f"no baseline column {column!r}")
    X = pd.DataFrame(
        {
            "mr": [str(PYRADIOMICS_DATA / f"{case}_image.nrrd")],
            "mr_mask": [str(PYRADIOMICS_DATA / f"{case}_label.nrrd")],
        },
        index=[column],
    )
    n_checked = 0
    for (settings, image_types), classes in groups.items():
        params = {
            "setting": ast.literal_eval(settings),
            "imageType": ast.literal_eval(image_types),
            "featureClass": {c: None for c in classes},
        }
        extractor = RadiomicsExtractor(phases=("mr",), params=params)
        features = extractor.fit_transform(X)
        for class_name, baseline in classes.items():
            expected = {
                k: float(v)
                for k, v in baseline.items()
                if not k.startswith("diagnostics_") and pd.notna(v)
            }
            assert expected, class_name
            for name, value in expected.items():
                column_name = f"mr_{name}"
                assert column_name in features.columns, f"{column}: no {name}"
                rtol = (
                    1e-3 if column == "brain1" and name.split("_")[-1] in _MESH_FEATURES else 1e-6
                )
                np.testing.assert_allclose(
                    features.at[column, column_name],
                    value,
                    rtol=rtol,
                    atol=1e-12,
                    err_msg=f"{column}: {name}",
                )
                n_checked += 1
            # the masks read through p53radiomics.io (binary, label 1) are the baseline's masks
            for which in ("Image", "Mask"):
                hash_name = f"diagnostics_{which}-original_Hash"
                assert extractor.diagnostics_.at[column, f"mr_{hash_name}"] == baseline[hash_name]
    assert n_checked >= 40


# --------------------------------------------------------------------------------------------------
# The default parameter set
# --------------------------------------------------------------------------------------------------
def _grey_levels(image, mask, settings):
    """Number of grey levels in the ROI after PyRadiomics's normalisation and discretisation."""
    from radiomics import imageoperations

    if settings.get("normalize"):
        image = imageoperations.normalizeImage(image, **settings)
    values = sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(mask) > 0]
    binned, _ = imageoperations.binImage(values, **settings)
    return np.unique(binned).size


def test_default_set_on_a_preprocessed_like_case():
    """The full default set: >= 1,000 named features per phase, finite, realistic grey levels."""
    image, mask = _tumour(7, shape=(20, 24, 24), radius=5.0)  # z-scored, as N4Resampler gives
    X = pd.DataFrame({"ap": [image], "ap_mask": [mask]}, index=["P1"])
    extractor = RadiomicsExtractor(phases=("ap",))
    names = extractor.get_feature_names_out()  # before any case is read
    features = extractor.fit_transform(X)
    assert features.shape == (1, names.size)
    assert names.size >= 1000
    assert features.columns.tolist() == names.tolist()
    assert (features.dtypes == np.float64).all()
    assert np.isfinite(features.to_numpy()).all()
    # the same values as PyRadiomics run directly with the shipped YAML
    direct = _pyradiomics(str(DEFAULT_PARAMS_FILE), image, sitk.Cast(mask, sitk.sitkUInt32))
    assert list(direct) == [n.removeprefix("ap_") for n in names]
    np.testing.assert_allclose(
        features.iloc[0].to_numpy(), list(direct.values()), rtol=1e-12, atol=0
    )

    # grey levels (DESIGN §6): the default set discretises the z-scored ROI into a realistic number
    # of levels; PyRadiomics's own default (binWidth 25) would leave one or two.
    settings = load_params()["setting"]
    assert _grey_levels(image, mask, settings) >= 24
    assert _grey_levels(image, mask, {"binWidth": 25}) <= 3
    assert features.at["P1", "ap_original_firstorder_Entropy"] > 3.0
    trap = _pyradiomics(
        {"featureClass": {"firstorder": ["Entropy"]}}, image, sitk.Cast(mask, sitk.sitkUInt32)
    )
    assert trap["original_firstorder_Entropy"] < 1.0


def test_grey_levels_on_n4resampler_output():
    """DESIGN §6 on N4Resampler's own output: an MR-like case in raw units (0.8 x 0.8 x 3 mm),
    bias-corrected, cropped, resampled to 1 mm and z-scored, then the full default set."""
    from p53radiomics.preprocessing import N4Resampler

    image, mask = _tumour(11, shape=(16, 64, 64), radius=6.0, spacing=(0.8, 0.8, 3.0), zscore=False)
    X = pd.DataFrame({"ap": [image], "ap_mask": [mask]}, index=["P1"])
    pipeline = make_pipeline(N4Resampler(phases=("ap",)), RadiomicsExtractor(phases=("ap",)))
    features = pipeline.fit_transform(X)
    preprocessed = pipeline[0].transform(X)
    image, mask = preprocessed.at["P1", "ap"], preprocessed.at["P1", "ap_mask"]
    assert image.GetSpacing() == (1.0, 1.0, 1.0)
    assert _grey_levels(image, mask, load_params()["setting"]) >= 24
    assert _grey_levels(image, mask, {"binWidth": 25}) <= 3
    assert features.shape == (1, 1223) and np.isfinite(features.to_numpy()).all()
    assert features.at["P1", "ap_original_firstorder_Entropy"] > 3.0


def test_default_set_on_a_real_abdominal_mr():
    """A real MR (liver ROI, label 5, 3-mm voxels), z-scored over a crop around the ROI like
    N4Resampler: the full default set equals PyRadiomics called directly, grey levels realistic."""
    if not ABDOMINAL_MR.is_dir():
        pytest.skip(f"abdominal MR not found in {ABDOMINAL_MR}")
    image = sitk.ReadImage(str(ABDOMINAL_MR / "example_mr_sm.nii.gz"))
    label = sitk.ReadImage(str(ABDOMINAL_MR / "example_seg_roi_subset_mr.nii.gz"))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(label)
    (lab,) = stats.GetLabels()
    box = np.asarray(stats.GetBoundingBox(lab))
    start = np.maximum(box[:3] - 10, 0)
    stop = np.minimum(box[:3] + box[3:] + 10, image.GetSize())
    crop = [slice(int(a), int(b)) for a, b in zip(start, stop, strict=True)]
    image, label = image[crop[0], crop[1], crop[2]], label[crop[0], crop[1], crop[2]]
    image = sitk.Normalize(sitk.Cast(image, sitk.sitkFloat32))
    X = pd.DataFrame({"pvp": [image], "mask": [label]}, index=["liver"])
    features = RadiomicsExtractor(phases=("pvp",)).fit_transform(X)
    direct = _pyradiomics(str(DEFAULT_PARAMS_FILE), image, label, label=lab)
    assert features.columns.tolist() == [f"pvp_{n}" for n in direct]
    np.testing.assert_allclose(
        features.iloc[0].to_numpy(), list(direct.values()), rtol=1e-12, atol=0
    )
    settings = load_params()["setting"]
    assert _grey_levels(image, label == lab, settings) >= 24
    assert _grey_levels(image, label == lab, {"binWidth": 25}) <= 3
    assert features.at["liver", "pvp_original_firstorder_Entropy"] > 3.0


def test_default_parameter_file_is_a_pyradiomics_parameter_file():
    params = load_params()
    assert params == load_params(DEFAULT_PARAMS_FILE)
    assert list(params["imageType"]) == ["Original", "Wavelet", "LoG"]
    assert params["setting"]["binCount"] == 32 and "binWidth" not in params["setting"]
    names = feature_names()
    assert len(names) == 14 + 13 * 93 == 1223
    assert len(set(names)) == len(names)
    assert sum(n.startswith("original_shape_") for n in names) == 14
    assert len(RadiomicsExtractor().get_feature_names_out()) == 3 * 1223


# --------------------------------------------------------------------------------------------------
# Feature names
# --------------------------------------------------------------------------------------------------
_NAME_PARAMS = {
    "every image type": {
        "imageType": {
            "Original": {},
            "Wavelet": {"level": 2},
            "LoG": {"sigma": [1, 2.5]},
            "Square": {},
            "SquareRoot": {},
            "Logarithm": {},
            "Exponential": {},
            "Gradient": {},
        },
        "featureClass": {"firstorder": ["Mean", "Median"], "ngtdm": None},
        "setting": {"binCount": 8},
    },
    "feature lists with deprecated features": {
        "featureClass": {
            "shape": ["VoxelVolume", "Compactness1", "Sphericity"],
            "firstorder": ["StandardDeviation", "Mean", "Mean"],
            "glcm": ["SumVariance", "Idmn", "Homogeneity1"],
            "gldm": ["GrayLevelNonUniformityNormalized", "DependenceEntropy"],
        },
        "setting": {"binCount": 8},
    },
    "force2D": {
        "imageType": {"Original": {}, "Wavelet": {}},
        "featureClass": {"firstorder": ["Mean"], "glrlm": None},
        "setting": {"force2D": True, "force2Ddimension": 0, "binCount": 8},
    },
    "everything PyRadiomics enables by default": {},
}


@pytest.mark.parametrize("params", _NAME_PARAMS.values(), ids=_NAME_PARAMS.keys())
def test_feature_names_equal_a_real_extraction(params):
    """Names computed from the parameters equal PyRadiomics's own output, in its order."""
    image, mask = _tumour(3)
    real = _pyradiomics(params, image, sitk.Cast(mask, sitk.sitkUInt32))
    assert feature_names(params) == list(real)
    X = pd.DataFrame({"dp": [image], "mask": [mask]}, index=["P9"])
    extractor = RadiomicsExtractor(phases=("dp",), params=params)
    assert extractor.fit_transform(X).columns.tolist() == [f"dp_{n}" for n in real]


def test_names_are_stable_and_prefixed():
    extractor = RadiomicsExtractor(phases=("ap", "pvp", "dp"), params=SMALL_PARAMS)
    names = extractor.get_feature_names_out()
    assert names.dtype == object and names.size == 3 * N_SMALL
    assert names.tolist() == clone(extractor).get_feature_names_out().tolist()
    assert (
        names.tolist()
        == RadiomicsExtractor(phases=["ap", "pvp", "dp"], params=SMALL_PARAMS)
        .get_feature_names_out()
        .tolist()
    )
    for k, phase in enumerate(("ap", "pvp", "dp")):
        block = names[k * N_SMALL : (k + 1) * N_SMALL]
        assert all(n.startswith(f"{phase}_") for n in block)
        assert [n.removeprefix(f"{phase}_") for n in block] == feature_names(SMALL_PARAMS)
    assert "ap_original_firstorder_Mean" in names and "pvp_wavelet-LLH_glcm_Idmn" in names
    assert "dp_log-sigma-2-0-mm-3D_firstorder_Entropy" in names
    swapped = RadiomicsExtractor(phases=("dp", "ap"), params=SMALL_PARAMS).get_feature_names_out()
    assert swapped[0].startswith("dp_") and swapped[-1].startswith("ap_")


# --------------------------------------------------------------------------------------------------
# Parameters: dict, YAML, errors
# --------------------------------------------------------------------------------------------------
def _write_yaml(path, data):
    from ruamel.yaml import YAML

    with open(path, "w") as fh:
        YAML(typ="rt", pure=True).dump(data, fh)  # keeps the key order (the safe dumper sorts keys)
    return path


SMALL_PARAMS_YAML = """\
# SMALL_PARAMS as a user would write the file
imageType:
  Original: {}
  Wavelet: {}
  LoG:
    sigma: [2.0]
featureClass:
  shape: [VoxelVolume, Sphericity]
  firstorder: [Mean, Entropy, Kurtosis]
  glcm:
    - Idmn
    - JointEntropy
setting:
  binCount: 16
  preCrop: true
  normalize: true
"""


def test_yaml_and_dict_give_the_same_table(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(SMALL_PARAMS_YAML)
    assert (
        load_params(path)
        == load_params(SMALL_PARAMS)
        == load_params(_write_yaml(tmp_path / "dumped.yaml", SMALL_PARAMS))
    )
    X = _cohort(2)
    from_dict = RadiomicsExtractor(params=SMALL_PARAMS, phases=("ap", "pvp")).fit_transform(X)
    from_file = RadiomicsExtractor(params=path, phases=("ap", "pvp")).fit_transform(X)
    from_str = RadiomicsExtractor(params=str(path), phases=("ap", "pvp")).fit_transform(X)
    pd.testing.assert_frame_equal(from_dict, from_file, check_exact=True)
    pd.testing.assert_frame_equal(from_dict, from_str, check_exact=True)
    assert from_dict.shape == (2, 2 * N_SMALL)


_BAD_PARAMS = {
    "unknown setting": ({"setting": {"binWidht": 25}}, r"Key 'binWidht' was not defined"),
    "value out of range": ({"setting": {"binCount": 0}}, r"binCount"),
    "value of the wrong type": ({"setting": {"normalize": "yes"}}, r"normalize"),
    "unknown image type": ({"imageType": {"Wavlet": {}}}, r"Image Type Wavlet is not recognized"),
    "unknown feature class": (
        {"featureClass": {"glcmm": None}},
        r"Feature Class glcmm is not recognized",
    ),
    "unknown feature": ({"featureClass": {"glcm": ["Idmnn"]}}, r"unrecognized features.*Idmnn"),
    "unknown top-level key": ({"settings": {"binCount": 32}}, r"Key 'settings' was not defined"),
    "a label other than 1 on an image type": (
        {"imageType": {"Original": {"label": 2}}},
        r"label must be 1",
    ),
    "shape2D in 3D": ({"featureClass": {"shape2D": None}}, r"shape2D needs setting force2D"),
    "a geometry tolerance of its own": (  # io's GEOMETRY_TOLERANCE is the one rule
        {"setting": {"geometryTolerance": 0.01}},
        r"geometryTolerance must not be set: .*GEOMETRY_TOLERANCE, 0.001 of the smallest voxel",
    ),
}


@pytest.mark.parametrize("params, match", _BAD_PARAMS.values(), ids=_BAD_PARAMS.keys())
def test_bad_parameters_give_a_clear_error(params, match, tmp_path):
    X = _cohort(1, phases=("ap",))
    with pytest.raises(ValueError, match=r"invalid PyRadiomics parameters \(dict\): .*" + match):
        RadiomicsExtractor(phases=("ap",), params=params).fit(X)
    with pytest.raises(ValueError, match=match):
        RadiomicsExtractor(phases=("ap",), params=params).get_feature_names_out()
    path = _write_yaml(tmp_path / "bad.yaml", params)
    with pytest.raises(
        ValueError, match=r"invalid PyRadiomics parameters \(file '.*bad\.yaml'\): .*" + match
    ):
        RadiomicsExtractor(phases=("ap",), params=path).transform(X)


def test_bad_parameter_files_give_a_clear_error(tmp_path):
    X = _cohort(1, phases=("ap",))
    with pytest.raises(ValueError, match=r"parameter file not found: '.*missing\.yaml'"):
        RadiomicsExtractor(phases=("ap",), params=tmp_path / "missing.yaml").fit(X)
    broken = tmp_path / "broken.yaml"
    broken.write_text("setting:\n  binCount: [32\n")
    with pytest.raises(
        ValueError, match=r"cannot parse the PyRadiomics parameter file '.*broken\.yaml'"
    ):
        RadiomicsExtractor(phases=("ap",), params=broken).fit(X)
    listed = tmp_path / "list.yaml"
    listed.write_text("- binCount\n- 32\n")
    with pytest.raises(ValueError, match=r"expected a mapping"):
        RadiomicsExtractor(phases=("ap",), params=listed).fit(X)
    with pytest.raises(InvalidParameterError, match="params"):
        RadiomicsExtractor(phases=("ap",), params=32).fit(X)


def test_lbp_filters_name_their_missing_packages():
    pytest.importorskip("scipy")
    if __import__("importlib").util.find_spec("trimesh") is not None:
        pytest.skip("trimesh is installed")
    with pytest.raises(ValueError, match="LBP3D needs the packages scipy and trimesh"):
        load_params({"imageType": {"LBP3D": {}}})


def test_parameters_are_validated_in_fit_and_transform():
    X = _cohort(1, phases=("ap",))
    for bad in ({"on_error": "ignore"}, {"n_jobs": "two"}, {"phases": "ap"}, {"verbose": "loud"}):
        extractor = RadiomicsExtractor(**{"phases": ("ap",), **bad})
        with pytest.raises(InvalidParameterError):
            extractor.fit(X)
        with pytest.raises(InvalidParameterError):
            extractor.transform(X)
    for phases in (("ap", "ap"), (), ("ap", 3)):
        with pytest.raises(ValueError, match="distinct phase names"):
            RadiomicsExtractor(phases=phases).get_feature_names_out()
    params = {"setting": {"binCount": 8}}
    extractor = RadiomicsExtractor(phases=("ap",), params=params)
    assert extractor.get_params()["params"] is params  # stored unchanged
    extractor.fit_transform(X)
    assert params == {"setting": {"binCount": 8}}  # not modified


# --------------------------------------------------------------------------------------------------
# Speed: parallel, cache
# --------------------------------------------------------------------------------------------------
def test_n_jobs_2_equals_n_jobs_1(tmp_path):
    X = _cohort(3, folder=tmp_path)
    serial = RadiomicsExtractor(phases=("ap", "pvp"), params=SMALL_PARAMS, n_jobs=1).fit_transform(
        X
    )
    parallel = RadiomicsExtractor(
        phases=("ap", "pvp"), params=SMALL_PARAMS, n_jobs=2
    ).fit_transform(X)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=False, rtol=1e-12, atol=0)
    assert np.isfinite(serial.to_numpy()).all()


def test_the_cache_is_hit(tmp_path, monkeypatch):
    inputs, cache_dir = tmp_path / "inputs", tmp_path / "cache"
    inputs.mkdir()
    X = _cohort(2, folder=inputs)
    first = RadiomicsExtractor(phases=("ap", "pvp"), params=SMALL_PARAMS, cache_dir=cache_dir)
    expected = first.fit_transform(X)
    assert (first.cache_misses_, first.cache_hits_) == (4, 0)
    assert not list(inputs.glob("*cache*")) and sorted(p.name for p in inputs.iterdir()) == sorted(
        Path(c).name for c in X[["ap", "ap_mask", "pvp", "pvp_mask"]].to_numpy().ravel()
    )

    # A second extractor (as in cross-validation: a clone) reads every case back, extracts nothing.
    import p53radiomics.radiomics._extractor as extractor_module

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted a case that is in the cache")

    with monkeypatch.context() as patch:
        patch.setattr(extractor_module, "extract_phase", no_extraction)
        second = clone(first)
        again = second.fit_transform(X)
    pd.testing.assert_frame_equal(expected, again, check_exact=True)
    assert (second.cache_misses_, second.cache_hits_) == (0, 4)
    pd.testing.assert_frame_equal(first.diagnostics_, second.diagnostics_)

    # keyed by contents: moved files still hit, an edited image misses (only its own case)
    moved = tmp_path / "moved"
    shutil.copytree(inputs, moved)
    X_moved = X.copy()
    for column in ("ap", "ap_mask", "pvp", "pvp_mask"):
        X_moved[column] = [str(moved / Path(p).name) for p in X[column]]
    image, _ = _tumour(99, radius=4.0)
    sitk.WriteImage(image, X_moved.at["P001", "pvp"])
    third = clone(first)
    changed = third.fit_transform(X_moved)
    assert (third.cache_misses_, third.cache_hits_) == (1, 3)
    pd.testing.assert_frame_equal(
        changed.drop(index="P001"), expected.drop(index="P001"), check_exact=True
    )
    assert not np.allclose(
        changed.loc["P001"].filter(like="pvp_"), expected.loc["P001"].filter(like="pvp_")
    )

    # other parameters miss; in-memory images are keyed by their pixels and geometry
    other = RadiomicsExtractor(
        phases=("ap",), params={**SMALL_PARAMS, "setting": {"binCount": 8}}, cache_dir=cache_dir
    )
    other.fit_transform(X)
    assert (other.cache_misses_, other.cache_hits_) == (2, 0)
    X_memory = X.copy()
    for column in ("ap", "ap_mask"):
        X_memory[column] = [sitk.ReadImage(p) for p in X[column]]
    in_memory = RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS, cache_dir=cache_dir)
    in_memory.fit_transform(X_memory)
    assert in_memory.cache_hits_ == 0
    in_memory.fit_transform(X_memory)
    assert in_memory.cache_hits_ == 2


# --------------------------------------------------------------------------------------------------
# Bad inputs (DESIGN §7)
# --------------------------------------------------------------------------------------------------
def _break(case, folder):
    """Cohort of 3 patients in which patient P001's phase 'pvp' has the problem `case`."""
    X = _cohort(3, folder=folder)
    mask = sitk.ReadImage(X.at["P001", "pvp_mask"])
    column = "pvp_mask"
    if case == "missing file":
        X.at["P001", "pvp"], column = str(folder / "nowhere.nii.gz"), "pvp"
    elif case == "unreadable file":
        (folder / "text.nii.gz").write_text("not an image")
        X.at["P001", "pvp"], column = str(folder / "text.nii.gz"), "pvp"
    elif case == "empty cell":
        X.at["P001", "pvp"], column = None, "pvp"
    elif case == "empty mask":
        X.at["P001", "pvp_mask"] = mask * 0
    elif case == "geometry":
        mask.SetOrigin((5.0, 0.0, 0.0))
        X.at["P001", "pvp_mask"] = mask
    elif case == "several labels":
        mask[9, 9, 9] = 2
        X.at["P001", "pvp_mask"] = mask
    elif case == "single-voxel ROI":
        single = mask * 0
        single[9, 9, 9] = 1
        X.at["P001", "pvp_mask"], column = single, "pvp"
    return X, column


_BAD_INPUTS = {
    "missing file": "file not found",
    "unreadable file": "cannot read image",
    "empty cell": "the cell is empty",
    "empty mask": "mask is empty",
    "geometry": "do not share geometry: origin differs",
    "several labels": "mask holds 2 labels",
    "single-voxel ROI": r"PyRadiomics failed on phase 'pvp': ValueError: .*(1 segmented voxel|dimension)",
}


@pytest.mark.parametrize("case", _BAD_INPUTS)
def test_bad_input_raises_with_patient_and_column(case, tmp_path):
    X, column = _break(case, tmp_path)
    with pytest.raises(CohortError, match=_BAD_INPUTS[case]) as info:
        RadiomicsExtractor(phases=("ap", "pvp"), params=SMALL_PARAMS).fit_transform(X)
    assert info.value.patient_id == "P001" and info.value.column == column
    assert str(info.value).startswith(f"patient 'P001', column '{column}': ")


# A parameter set without PyRadiomics's correctMask, whose own geometry check then applies.
_STRICT_PARAMS = {
    "featureClass": {"firstorder": ["Mean", "Entropy"], "glcm": ["Idmn"]},
    "setting": {"binCount": 16},
}


def _shifted(mask, offset):
    shifted = sitk.Image(mask)
    shifted.SetOrigin(tuple(o + offset for o in mask.GetOrigin()))
    return shifted


@pytest.mark.parametrize("params", [_STRICT_PARAMS, None], ids=["strict", "study"])
def test_mask_within_the_geometry_tolerance_gives_the_exact_masks_features(params, tmp_path):
    """Defect 8 of issue 13: a mask 1e-5 mm off passed validate_cohort, then PyRadiomics refused
    it ("geometry mismatch", blaming the image column). One tolerance now: io's."""
    from p53radiomics.io import validate_cohort

    image, mask = _tumour(3, spacing=(0.8, 0.8, 3.0))
    sitk.WriteImage(_shifted(mask, -1e-5), str(tmp_path / "mask.nii.gz"))
    X = pd.DataFrame(
        {"ap": [image] * 3, "mask": [mask, _shifted(mask, 1e-5), str(tmp_path / "mask.nii.gz")]},
        index=["exact", "shifted", "file"],
    )
    validate_cohort(X, phases=("ap",))
    if params is None:  # the study's whole set on one case is slow: one row is enough
        X = X.loc[["shifted"]]
    features = RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)
    reference = RadiomicsExtractor(phases=("ap",), params=params).fit_transform(
        pd.DataFrame({"ap": [image], "mask": [mask]}, index=["exact"])
    )
    for patient in features.index:
        np.testing.assert_array_equal(features.loc[patient], reference.loc["exact"])


def test_mask_beyond_the_geometry_tolerance_is_refused_alike_everywhere():
    from p53radiomics.io import GEOMETRY_TOLERANCE, validate_cohort

    image, mask = _tumour(4, spacing=(0.8, 0.8, 3.0))
    X = pd.DataFrame(
        {"ap": [image], "mask": [_shifted(mask, 1.5 * GEOMETRY_TOLERANCE * 0.8)]}, index=["P7"]
    )
    with pytest.raises(CohortError, match="origin differs") as validated:
        validate_cohort(X, phases=("ap",))
    with pytest.raises(CohortError) as extracted:
        RadiomicsExtractor(phases=("ap",), params=_STRICT_PARAMS).fit_transform(X)
    assert str(extracted.value) == str(validated.value)
    assert (extracted.value.patient_id, extracted.value.column) == ("P7", "mask")
    assert "tolerated: 0.0008 mm, 0.001 of the smallest voxel spacing" in str(extracted.value)


@pytest.mark.parametrize("case", ["missing file", "several labels", "single-voxel ROI"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_bad_input_is_skipped_warned_and_recorded(case, n_jobs, tmp_path):
    X, column = _break(case, tmp_path)
    extractor = RadiomicsExtractor(
        phases=("ap", "pvp"),
        params=SMALL_PARAMS,
        on_error="skip",
        n_jobs=n_jobs,
        cache_dir=tmp_path / "cache",
    )
    with pytest.warns(SkippedCaseWarning, match=r"skipped 1 of 6 .*patient 'P001', phase 'pvp'"):
        features = extractor.fit_transform(X)
    assert features.shape == (3, 2 * N_SMALL)
    assert features.loc["P001"].filter(like="pvp_").isna().all()
    assert np.isfinite(features.drop(index="P001").to_numpy()).all()
    assert np.isfinite(features.loc["P001"].filter(like="ap_").to_numpy()).all()
    skipped = extractor.skipped_
    assert skipped.index.tolist() == ["P001"] and skipped.index.name == "patient_id"
    assert skipped[["phase", "column"]].to_numpy().tolist() == [["pvp", column]]
    assert re.search(_BAD_INPUTS[case], skipped.at["P001", "reason"])
    # a clean run records nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedCaseWarning)
        extractor.fit_transform(X.drop(index="P001"))
    assert extractor.skipped_.empty


def test_n4_and_radiomics_report_a_skipped_case_and_cache_hits_alike(tmp_path):
    """Both steps run the one case loop: a failed case and the cache's hits are reported alike."""
    import p53radiomics
    from p53radiomics.preprocessing import N4Resampler
    from p53radiomics.utils._cohort_step import CohortStep

    (tmp_path / "in").mkdir()
    X = _cohort(2, folder=tmp_path / "in")
    empty = sitk.ReadImage(X.at["P001", "pvp_mask"]) * 0
    sitk.WriteImage(empty, str(tmp_path / "in" / "empty_mask.nii.gz"))
    X.at["P001", "pvp_mask"] = str(tmp_path / "in" / "empty_mask.nii.gz")
    steps = {
        "N4Resampler": N4Resampler(phases=("ap", "pvp"), bias_correction=False, spacing=None),
        "RadiomicsExtractor": RadiomicsExtractor(phases=("ap", "pvp"), params=SMALL_PARAMS),
    }
    warned_from = set()  # both warn from the same frame: the caller of transform
    for name, step in steps.items():
        assert isinstance(step, CohortStep)
        step.set_params(on_error="skip", cache_dir=tmp_path / "cache" / name)
        for run, (hits, misses) in enumerate([(0, 4), (3, 1)]):  # a failure is not cached
            fitted = clone(step)
            with pytest.warns(SkippedCaseWarning, match=f"^{name} skipped 1 of") as record:
                fitted.fit_transform(X)
            assert len(record) == 1, name
            warned_from.add((record[0].filename, record[0].lineno))
            assert (fitted.cache_hits_, fitted.cache_misses_) == (hits, misses), (name, run)
            assert fitted.skipped_.index.tolist() == ["P001"], name
            assert fitted.skipped_.at["P001", "column"] == "pvp_mask", name
            assert "mask is empty" in fitted.skipped_.at["P001", "reason"], name
    ((filename, _),) = warned_from
    assert not Path(filename).is_relative_to(Path(p53radiomics.__file__).parent)


def test_unknown_phase_and_repeated_ids():
    X = _cohort(2)
    with pytest.raises(CohortError, match="unknown phase 'dp'"):
        RadiomicsExtractor(params=SMALL_PARAMS).fit(X)
    with pytest.raises(CohortError, match="unknown phase 'dp'"):
        RadiomicsExtractor(params=SMALL_PARAMS, on_error="skip").transform(X)
    with pytest.raises(CohortError, match="patient ids must be unique"):
        RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS).transform(pd.concat([X, X]))
    with pytest.raises(TypeError, match="DataFrame"):
        RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS).transform(X.to_numpy())


def test_a_feature_pyradiomics_cannot_compute_is_never_a_silent_nan(monkeypatch):
    """PyRadiomics logs an error and returns NaN when a feature fails: here it is raised or skipped."""
    from radiomics import firstorder

    def broken(self):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(firstorder.RadiomicsFirstOrder, "getKurtosisFeatureValue", broken)
    X = _cohort(2, phases=("ap",))
    with pytest.raises(
        CohortError,
        match=r"could not compute 10 features .*Kurtosis.*PyRadiomics said: ZeroDivisionError: boom",
    ):
        RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS).fit_transform(X)
    with pytest.warns(SkippedCaseWarning, match="skipped 2 of 2"):
        features = RadiomicsExtractor(
            phases=("ap",), params=SMALL_PARAMS, on_error="skip"
        ).fit_transform(X)
    assert features.isna().all().all()


def test_a_filter_pyradiomics_declines_is_reported():
    """A LoG sigma too large for the cropped image: PyRadiomics warns and leaves its features out."""
    params = {
        "imageType": {"LoG": {"sigma": [30.0]}},
        "featureClass": {"firstorder": ["Mean"]},
        "setting": {"padDistance": 0, "preCrop": True},
    }
    X = _cohort(1, phases=("ap",))
    with pytest.raises(
        CohortError,
        match=r"returned no value for 1 of 1 features .*log-sigma-30-0-mm-3D.*PyRadiomics said: applyLoG",
    ):
        RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)


# --------------------------------------------------------------------------------------------------
# scikit-learn conventions
# --------------------------------------------------------------------------------------------------
def test_image_estimator_checks_on_files(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    X = _cohort(2, folder=inputs)
    check_image_estimator(
        RadiomicsExtractor(phases=("ap", "pvp"), params=SMALL_PARAMS, cache_dir=tmp_path / "cache"),
        X,
    )


def test_image_estimator_checks_in_memory():
    check_image_estimator(
        RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS, n_jobs=1),
        _cohort(2, phases=("ap",)),
    )


def test_stateless_tags_and_set_output():
    extractor = RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS)
    assert extractor.__sklearn_tags__().requires_fit is False
    X = _cohort(2, phases=("ap",))
    plain = extractor.transform(X)  # no fit needed
    assert not [a for a in vars(RadiomicsExtractor()) if a.endswith("_")]
    assert extractor.set_output(transform="pandas") is extractor
    pd.testing.assert_frame_equal(extractor.transform(X), plain)
    assert isinstance(extractor.set_output(transform="default").transform(X), pd.DataFrame)
    assert plain.index.equals(X.index)


def test_in_a_pipeline_with_skipped_cases(tmp_path):
    X, _ = _break("several labels", tmp_path)
    X = pd.concat([X, _cohort(3, folder=tmp_path, seed=50).rename(index=lambda i: f"Q{i}")])
    y = np.array([0, 1, 0, 1, 0, 1])
    pipeline = make_pipeline(
        RadiomicsExtractor(phases=("ap", "pvp"), params=SMALL_PARAMS, on_error="skip"),
        SimpleImputer(),
        LogisticRegression(max_iter=1000),
    ).set_output(transform="pandas")
    with pytest.warns(SkippedCaseWarning):
        pipeline.fit(X, y)
    assert pipeline[0].skipped_.index.tolist() == ["P001"]
    with pytest.warns(SkippedCaseWarning):
        assert pipeline.predict_proba(X).shape == (6, 2)
    assert pipeline[:-1].get_feature_names_out().size == 2 * N_SMALL


def test_passthrough_columns_follow_the_features():
    X = _cohort(3, phases=("ap",)).assign(scanner=["S1", "S2", "S1"])
    plain = RadiomicsExtractor(phases=("ap",), params=SMALL_PARAMS)
    extractor = clone(plain).set_params(passthrough=("scanner", "age"))
    out = extractor.fit(X).transform(X)
    names = plain.get_feature_names_out().tolist()
    assert out.columns.tolist() == [*names, "scanner", "age"]
    assert extractor.get_feature_names_out().tolist() == out.columns.tolist()
    pd.testing.assert_frame_equal(out[names], plain.transform(X))
    assert out["scanner"].tolist() == ["S1", "S2", "S1"] and out["age"].tolist() == [50, 51, 52]
    assert out.index.equals(X.index) and out[names].dtypes.eq(np.float64).all()
    # a missing column is named, in fit and in transform, before anything is extracted
    for method in (extractor.fit, extractor.transform):
        with pytest.raises(CohortError, match="column 'scanner': passthrough column is missing"):
            method(X.drop(columns="scanner"))
    for bad, match in (("scanner", "tuple"), (("age", "age"), "twice"), ((3,), "column names")):
        with pytest.raises(ValueError, match=match):
            clone(plain).set_params(passthrough=bad).fit(X)
    with pytest.raises(ValueError, match="has the name of a feature"):
        clone(plain).set_params(passthrough=(names[0],)).get_feature_names_out()


# --------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------
def test_pyradiomics_is_quiet_unless_asked(caplog):
    image, mask = _tumour(5)
    X = pd.DataFrame({"ap": [image], "mask": [mask]}, index=["P1"])
    # enabling a deprecated feature makes PyRadiomics warn on every extraction
    params = {"featureClass": {"firstorder": ["Mean", "StandardDeviation"]}}
    import radiomics

    rlogger = logging.getLogger("radiomics")
    state = (rlogger.level, rlogger.propagate, [list(h.filters) for h in rlogger.handlers])
    own_stream = io.StringIO()  # PyRadiomics's own stderr handler, attached when it is imported
    previous = radiomics.handler.setStream(own_stream)
    try:
        with caplog.at_level(logging.DEBUG):  # records that reach the root logger
            caplog.clear()
            RadiomicsExtractor(phases=("ap",), params=params).fit_transform(X)
            assert own_stream.getvalue() == ""
            assert not [r for r in caplog.records if r.name.startswith("radiomics")]
            RadiomicsExtractor(phases=("ap",), params=params, verbose=2).fit_transform(X)
            assert "StandardDeviation is deprecated" in own_stream.getvalue()
            assert any("StandardDeviation is deprecated" in r.getMessage() for r in caplog.records)
    finally:
        radiomics.handler.setStream(previous)
    assert state == (rlogger.level, rlogger.propagate, [list(h.filters) for h in rlogger.handlers])


def test_importing_does_not_import_pyradiomics_or_add_handlers():
    code = (
        "import logging, sys, p53radiomics.radiomics;"
        "assert 'radiomics' not in sys.modules, 'PyRadiomics imported';"
        "assert not any(logging.getLogger(n).handlers for n in logging.root.manager.loggerDict if n.startswith('p53radiomics'))"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2]
    )
