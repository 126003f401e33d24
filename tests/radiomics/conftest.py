"""What the tests of p53radiomics.radiomics share: small synthetic tumours (z-scored like
N4Resampler's output), cohort tables of them, PyRadiomics called directly, and a reduced parameter
set for the tests that are not about the default set.

The helpers are factory fixtures: the test calls them with the arguments their docstrings name.
"""

import copy
import logging
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

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


@pytest.fixture
def small_params():
    """A reduced parameter set for the tests that are not about the default set (a fresh copy for
    each test): every kind of image (original, wavelet, LoG), a shape, first-order and texture
    class, few features."""
    return copy.deepcopy(SMALL_PARAMS)


@pytest.fixture(scope="session")
def n_small():
    """The number of features ``small_params`` gives per phase: shape once, then 5 features on 10
    images."""
    return N_SMALL


@pytest.fixture(scope="session")
def tumour():
    """``tumour(seed, *, shape=(18, 22, 22), radius=5.0, spacing=(1, 1, 1), zscore=True)``: a
    textured sphere in a textured background, z-scored like N4Resampler's output, and its mask."""
    return _tumour


@pytest.fixture(scope="session")
def tumour_cohort():
    """``tumour_cohort(n, phases=("ap", "pvp"), *, folder=None, seed=0)``: a cohort table of `n`
    patients (``P000``..., an ``age`` column) of ``tumour`` cases; images in memory, or NIfTI files
    in `folder`."""
    return _cohort


@pytest.fixture(scope="session")
def pyradiomics_features():
    """``pyradiomics_features(params, image, mask, **settings)``: PyRadiomics called directly,
    ``{name: value}`` without diagnostics."""
    return _pyradiomics
