"""The parameters of RadiomicsExtractor: the shipped default parameter file, feature names computed
from the parameters (equal to a real extraction's, stable, prefixed by phase), parameters given as a
dict or a YAML file, and the errors for bad parameters, bad parameter files and bad estimator
parameters.

The reduced parameter set (``small_params``) and the synthetic tumours are in ``conftest.py``.
"""

import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.radiomics import (
    DEFAULT_PARAMS_FILE,
    RadiomicsExtractor,
    feature_names,
    load_params,
)


# --------------------------------------------------------------------------------------------------
# The default parameter file
# --------------------------------------------------------------------------------------------------
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
def test_feature_names_equal_a_real_extraction(params, tumour, pyradiomics_features):
    """Names computed from the parameters equal PyRadiomics's own output, in its order."""
    image, mask = tumour(3)
    real = pyradiomics_features(params, image, sitk.Cast(mask, sitk.sitkUInt32))
    assert feature_names(params) == list(real)
    X = pd.DataFrame({"dp": [image], "mask": [mask]}, index=["P9"])
    extractor = RadiomicsExtractor(phases=("dp",), params=params)
    assert extractor.fit_transform(X).columns.tolist() == [f"dp_{n}" for n in real]


def test_names_are_stable_and_prefixed(small_params, n_small):
    extractor = RadiomicsExtractor(phases=("ap", "pvp", "dp"), params=small_params)
    names = extractor.get_feature_names_out()
    assert names.dtype == object and names.size == 3 * n_small
    assert names.tolist() == clone(extractor).get_feature_names_out().tolist()
    assert (
        names.tolist()
        == RadiomicsExtractor(phases=["ap", "pvp", "dp"], params=small_params)
        .get_feature_names_out()
        .tolist()
    )
    for k, phase in enumerate(("ap", "pvp", "dp")):
        block = names[k * n_small : (k + 1) * n_small]
        assert all(n.startswith(f"{phase}_") for n in block)
        assert [n.removeprefix(f"{phase}_") for n in block] == feature_names(small_params)
    assert "ap_original_firstorder_Mean" in names and "pvp_wavelet-LLH_glcm_Idmn" in names
    assert "dp_log-sigma-2-0-mm-3D_firstorder_Entropy" in names
    swapped = RadiomicsExtractor(phases=("dp", "ap"), params=small_params).get_feature_names_out()
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


def test_yaml_and_dict_give_the_same_table(tmp_path, tumour_cohort, small_params, n_small):
    path = tmp_path / "params.yaml"
    path.write_text(SMALL_PARAMS_YAML)
    assert (
        load_params(path)
        == load_params(small_params)
        == load_params(_write_yaml(tmp_path / "dumped.yaml", small_params))
    )
    X = tumour_cohort(2)
    from_dict = RadiomicsExtractor(params=small_params, phases=("ap", "pvp")).fit_transform(X)
    from_file = RadiomicsExtractor(params=path, phases=("ap", "pvp")).fit_transform(X)
    from_str = RadiomicsExtractor(params=str(path), phases=("ap", "pvp")).fit_transform(X)
    pd.testing.assert_frame_equal(from_dict, from_file, check_exact=True)
    pd.testing.assert_frame_equal(from_dict, from_str, check_exact=True)
    assert from_dict.shape == (2, 2 * n_small)


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
def test_bad_parameters_give_a_clear_error(params, match, tmp_path, tumour_cohort):
    X = tumour_cohort(1, phases=("ap",))
    with pytest.raises(ValueError, match=r"invalid PyRadiomics parameters \(dict\): .*" + match):
        RadiomicsExtractor(phases=("ap",), params=params).fit(X)
    with pytest.raises(ValueError, match=match):
        RadiomicsExtractor(phases=("ap",), params=params).get_feature_names_out()
    path = _write_yaml(tmp_path / "bad.yaml", params)
    with pytest.raises(
        ValueError, match=r"invalid PyRadiomics parameters \(file '.*bad\.yaml'\): .*" + match
    ):
        RadiomicsExtractor(phases=("ap",), params=path).transform(X)


def test_bad_parameter_files_give_a_clear_error(tmp_path, tumour_cohort):
    X = tumour_cohort(1, phases=("ap",))
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


def test_parameters_are_validated_in_fit_and_transform(tumour_cohort):
    X = tumour_cohort(1, phases=("ap",))
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
