"""Data sets: a synthetic three-phase DCE-MRI cohort that behaves like the study's."""

from ._scanners import EXTERNAL_SCANNERS, FIELDS_OF_VIEW, FieldOfView, scanner_table
from ._synthetic import REPEATED_MASK_SETS, SCANNERS, Scanner, make_synthetic_cohort

__all__ = [
    "EXTERNAL_SCANNERS",
    "FIELDS_OF_VIEW",
    "REPEATED_MASK_SETS",
    "SCANNERS",
    "FieldOfView",
    "Scanner",
    "make_synthetic_cohort",
    "scanner_table",
]
