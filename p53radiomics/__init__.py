"""p53radiomics: predict P53 mutation in hepatocellular carcinoma from three-phase contrast MRI.

A library of scikit-learn estimators that fuse a clinical model, a radiomics model (PyRadiomics) and a
CNN model (torchvision backbones trained through skorch) into one :class:`sklearn.pipeline.Pipeline`,
from image files to a fused probability.

Submodules: :mod:`p53radiomics.io` (images and the cohort table), :mod:`p53radiomics.datasets`
(the synthetic cohort), :mod:`p53radiomics.metrics` (the study's tables and statistics).
"""

from ._version import __version__
from .exceptions import CohortError, SkippedCaseWarning

__all__ = ["CohortError", "SkippedCaseWarning", "__version__"]
