"""RadiomicsExtractor's values against the references: every feature of PyRadiomics's published
baselines (``shared/data/pyradiomics``), and the full default parameter set against PyRadiomics run
directly, on a synthetic z-scored tumour, on N4Resampler's output and on a real abdominal MR
(``shared/data/abdominal_mr``), with realistic grey levels (DESIGN §6).

Tests that use the full default feature set run it on one small case. The synthetic tumours and
PyRadiomics called directly are ``tumour`` and ``pyradiomics_features`` in ``conftest.py``.
"""

import ast
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.pipeline import make_pipeline

from p53radiomics.radiomics import (
    DEFAULT_PARAMS_FILE,
    RadiomicsExtractor,
    load_params,
)


@pytest.fixture(scope="module")
def pyradiomics_data(shared_data):
    """PyRadiomics's test cases and baselines (``shared/data/pyradiomics``)."""
    return shared_data / "pyradiomics"


@pytest.fixture(scope="module")
def abdominal_mr(shared_data):
    """The real abdominal MR and its ROI labels (``shared/data/abdominal_mr``)."""
    return shared_data / "abdominal_mr"


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
def test_reproduces_pyradiomics_baselines(column, pyradiomics_data):
    """Every baseline feature of brain1, brain2, breast1 (and their non-2D variants) to 1e-6 relative."""
    if not pyradiomics_data.is_dir():
        pytest.skip(f"PyRadiomics test data not found in {pyradiomics_data}")
    case = column.split("_")[0]
    groups = defaultdict(dict)  # (settings, image types) -> {class: baseline column}
    for class_name in _BASELINE_CLASSES:
        table = pd.read_csv(
            pyradiomics_data / "baseline" / f"baseline_{class_name}.csv", index_col=0
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
            "mr": [str(pyradiomics_data / f"{case}_image.nrrd")],
            "mr_mask": [str(pyradiomics_data / f"{case}_label.nrrd")],
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


def test_default_set_on_a_preprocessed_like_case(tumour, pyradiomics_features):
    """The full default set: >= 1,000 named features per phase, finite, realistic grey levels."""
    image, mask = tumour(7, shape=(20, 24, 24), radius=5.0)  # z-scored, as N4Resampler gives
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
    direct = pyradiomics_features(str(DEFAULT_PARAMS_FILE), image, sitk.Cast(mask, sitk.sitkUInt32))
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
    trap = pyradiomics_features(
        {"featureClass": {"firstorder": ["Entropy"]}}, image, sitk.Cast(mask, sitk.sitkUInt32)
    )
    assert trap["original_firstorder_Entropy"] < 1.0


def test_grey_levels_on_n4resampler_output(tumour):
    """DESIGN §6 on N4Resampler's own output: an MR-like case in raw units (0.8 x 0.8 x 3 mm),
    bias-corrected, cropped, resampled to 1 mm and z-scored, then the full default set."""
    from p53radiomics.preprocessing import N4Resampler

    image, mask = tumour(11, shape=(16, 64, 64), radius=6.0, spacing=(0.8, 0.8, 3.0), zscore=False)
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


def test_default_set_on_a_real_abdominal_mr(pyradiomics_features, abdominal_mr):
    """A real MR (liver ROI, label 5, 3-mm voxels), z-scored over a crop around the ROI like
    N4Resampler: the full default set equals PyRadiomics called directly, grey levels realistic."""
    if not abdominal_mr.is_dir():
        pytest.skip(f"abdominal MR not found in {abdominal_mr}")
    image = sitk.ReadImage(str(abdominal_mr / "example_mr_sm.nii.gz"))
    label = sitk.ReadImage(str(abdominal_mr / "example_seg_roi_subset_mr.nii.gz"))
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
    direct = pyradiomics_features(str(DEFAULT_PARAMS_FILE), image, label, label=lab)
    assert features.columns.tolist() == [f"pvp_{n}" for n in direct]
    np.testing.assert_allclose(
        features.iloc[0].to_numpy(), list(direct.values()), rtol=1e-12, atol=0
    )
    settings = load_params()["setting"]
    assert _grey_levels(image, label == lab, settings) >= 24
    assert _grey_levels(image, label == lab, {"binWidth": 25}) <= 3
    assert features.at["liver", "pvp_original_firstorder_Entropy"] > 3.0
