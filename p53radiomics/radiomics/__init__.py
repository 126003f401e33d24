"""Radiomics: PyRadiomics features of the tumour ROI of each phase.

:class:`RadiomicsExtractor` is the scikit-learn step; :func:`load_params` and :func:`feature_names`
read a PyRadiomics parameter set and name its features without extracting. The study's parameter
set ships as ``study.yaml`` beside this module (:data:`DEFAULT_PARAMS_FILE`).

This sub-package is ``p53radiomics.radiomics``; PyRadiomics's own top-level package is also named
``radiomics``, and is always imported absolutely (``import radiomics``) from here.
"""

from ._extractor import RadiomicsExtractor
from ._params import DEFAULT_PARAMS_FILE, feature_names, load_params

__all__ = ["DEFAULT_PARAMS_FILE", "RadiomicsExtractor", "feature_names", "load_params"]
