"""The image-level estimator checks catch the faults they are meant to catch."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from p53radiomics.utils.estimator_checks import check_image_estimator


class MeanInROI(TransformerMixin, BaseEstimator):
    """Mean image intensity in the mask, minus a mean learnt in fit (a well-behaved step)."""

    def __init__(self, shift=0.0, random_state=None):
        self.shift = shift
        self.random_state = random_state

    def _means(self, X):
        out = []
        for image, mask in zip(X["ap"], X["mask"], strict=True):
            img = sitk.ReadImage(image) if isinstance(image, str) else image
            m = sitk.ReadImage(mask) if isinstance(mask, str) else mask
            a, b = sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(m)
            out.append(a[b > 0].mean())
        return np.asarray(out)

    def fit(self, X, y=None):
        self.center_ = self._means(X).mean() + self.shift
        return self

    def transform(self, X):
        check_is_fitted(self)
        return pd.DataFrame({"mean": self._means(X) - self.center_}, index=X.index)


class MutatesInput(MeanInROI):
    def fit(self, X, y=None):
        super().fit(X, y)
        X["ap"].iloc[0][0, 0, 0] = 123.0  # writes into the user's image
        return self


class WritesIntoInputFolder(MeanInROI):
    def fit(self, X, y=None):
        super().fit(X, y)
        sitk.WriteImage(sitk.ReadImage(X["ap"].iloc[0]), X["ap"].iloc[0] + ".bak.nrrd")
        return self


class RandomOutput(MeanInROI):
    def transform(self, X):
        rng = np.random.default_rng()  # ignores random_state
        return super().transform(X) + rng.normal(size=(len(X), 1))


class NoNotFittedError(MeanInROI):
    def transform(self, X):
        if not hasattr(self, "center_"):
            return pd.DataFrame({"mean": self._means(X)}, index=X.index)
        return super().transform(X)


def _cohort(tmp_path=None):
    rng = np.random.default_rng(0)
    images, masks = [], []
    for i in range(3):
        image = sitk.GetImageFromArray(rng.normal(size=(4, 8, 8)).astype(np.float32))
        mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        mask.CopyInformation(image)
        mask[2:6, 2:6, 1:3] = 1
        if tmp_path is not None:
            path = tmp_path / f"P{i}_ap.nrrd"
            sitk.WriteImage(image, str(path))
            image = str(path)
        images.append(image)
        masks.append(mask)
    return pd.DataFrame({"ap": images, "mask": masks}, index=[f"P{i}" for i in range(3)])


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_good_estimator_passes(tmp_path, on_disk):
    check_image_estimator(MeanInROI(random_state=0), _cohort(tmp_path if on_disk else None))


@pytest.mark.parametrize(
    "estimator, on_disk, message",
    [
        (MutatesInput(), False, "modified an input image in place"),
        (WritesIntoInputFolder(), True, "wrote into an input folder"),
        (RandomOutput(), False, "after pickling|same random_state|second fit"),
        (NoNotFittedError(), False, "NotFittedError"),
    ],
)
def test_faults_are_caught(tmp_path, estimator, on_disk, message):
    with pytest.raises(AssertionError, match=message):
        check_image_estimator(estimator, _cohort(tmp_path if on_disk else None))
