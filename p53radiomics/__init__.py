"""p53radiomics: predict P53 mutation in hepatocellular carcinoma from three-phase contrast MRI.

A library of scikit-learn estimators that fuse a clinical model, a radiomics model (PyRadiomics) and a
CNN model (torchvision backbones trained through skorch) into one :class:`sklearn.pipeline.Pipeline`,
from image files to a fused probability.

The estimators and :func:`make_paper_pipeline` are importable from here; they are loaded on first
use (PEP 562), so that ``import p53radiomics`` and the command line's ``--help`` do not pay for
torch, PyRadiomics and SimpleITK. Submodules: :mod:`p53radiomics.io` (images and the cohort table),
:mod:`p53radiomics.datasets` (the synthetic cohort), :mod:`p53radiomics.metrics` (the study's tables
and statistics), :mod:`p53radiomics.plotting` (ROC, calibration, decision curves, nomogram,
Grad-CAM), :mod:`p53radiomics.persistence` (model files that loading never executes:
:func:`save_model`, :func:`load_model`).
"""

import importlib

from ._version import __version__
from .exceptions import (
    CohortError,
    CUDAGraphWarning,
    InvertedBranchWarning,
    ModelFileError,
    ModelVersionWarning,
    SkippedCaseWarning,
    UnseenBatchWarning,
)

_LAZY = {
    "N4Resampler": "p53radiomics.preprocessing",
    "LargestSliceCropper": "p53radiomics.preprocessing",
    "RadiomicsExtractor": "p53radiomics.radiomics",
    "SkorchCNNFeaturizer": "p53radiomics.deep",
    "CorrelationFilter": "p53radiomics.feature_selection",
    "LassoSelector": "p53radiomics.feature_selection",
    "StackingFusion": "p53radiomics.fusion",
    "ComBatHarmonizer": "p53radiomics.harmonization",
    "make_paper_pipeline": "p53radiomics.pipeline",
    "save_model": "p53radiomics.persistence",
    "load_model": "p53radiomics.persistence",
}

__all__ = [
    "CUDAGraphWarning",
    "CohortError",
    "InvertedBranchWarning",
    "ModelFileError",
    "ModelVersionWarning",
    "SkippedCaseWarning",
    "UnseenBatchWarning",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'p53radiomics' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
