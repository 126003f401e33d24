"""Plots of the study's evaluation, as scikit-learn ``Display`` classes.

- :class:`RocCurveDisplay`: ROC curves with bootstrap bands, AUCs with confidence intervals, and
  DeLong p-values between curves.
- :class:`CalibrationDisplay`: calibration curves with slope, intercept and Brier score.
- :class:`DecisionCurveDisplay`: decision curves with the treat-all and treat-none references.
- :class:`NomogramDisplay`: the nomogram of a logistic model.
- :class:`GradCAMDisplay`: Grad-CAM heatmaps over a patient's phase crops.

Each has ``from_predictions`` (or ``from_arrays``) and, where it applies, ``from_estimator``, and
``plot(ax=None)`` storing ``ax_``/``axes_``, ``figure_`` and its artists. matplotlib is imported
only when something is drawn.
"""

from ._calibration import CalibrationDisplay
from ._decision_curve import DecisionCurveDisplay
from ._gradcam import GradCAMDisplay
from ._nomogram import NomogramDisplay
from ._roc_curve import RocCurveDisplay

__all__ = [
    "CalibrationDisplay",
    "DecisionCurveDisplay",
    "GradCAMDisplay",
    "NomogramDisplay",
    "RocCurveDisplay",
]
