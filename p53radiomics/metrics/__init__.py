"""Evaluation: ROC statistics (DeLong), the study's tables, decision curves, calibration and ICC.

- :func:`roc_auc_ci`, :func:`delong_test`, :func:`youden_threshold`: ROC statistics, equal to
  pROC's (DeLong's variance by the fast algorithm of Sun & Xu).
- :func:`diagnostic_table`: accuracy, AUC (95% CI), sensitivity and specificity per model and
  cohort, as the study's Tables 3-5.
- :func:`logistic_odds_ratios`: univariable and multivariable odds ratios, as the study's Table 2.
- :func:`net_benefit`: decision curves, equal to ``dcurves``.
- :func:`calibration_summary`: calibration curve, slope, intercept and Brier score.
- :func:`cohort_summary`: baseline characteristics by group, as the study's Table 1;
  :func:`format_p_value`: p-values as its tables and the ROC figure print them.
- :func:`icc`: intraclass correlation (the six Shrout-Fleiss forms) with its CI and F test,
  equal to pingouin's; :func:`reproducibility_table` and :func:`reproducibility_summary`: the ICC
  of every feature between readers and sessions, and the study's one-line summary of it.
- :func:`binary_labels`, :func:`check_binary_target`: labels checked, and turned into 1 =
  P53-mutated (also in :mod:`p53radiomics.io`).
"""

from ._calibration import calibration_summary
from ._cohort import cohort_summary, format_p_value
from ._decision_curve import net_benefit
from ._diagnostic_table import diagnostic_table
from ._icc import ICCResult, icc
from ._labels import binary_labels, check_binary_target
from ._odds_ratios import logistic_odds_ratios
from ._reproducibility import reproducibility_summary, reproducibility_table
from ._roc import delong_test, roc_auc_ci, youden_threshold

__all__ = [
    "ICCResult",
    "binary_labels",
    "calibration_summary",
    "check_binary_target",
    "cohort_summary",
    "delong_test",
    "diagnostic_table",
    "format_p_value",
    "icc",
    "logistic_odds_ratios",
    "net_benefit",
    "reproducibility_summary",
    "reproducibility_table",
    "roc_auc_ci",
    "youden_threshold",
]
