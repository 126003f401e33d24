"""Data sets: a synthetic three-phase DCE-MRI cohort that behaves like the study's."""

from ._synthetic import REPEATED_MASK_SETS, SCANNERS, Scanner, make_synthetic_cohort

__all__ = ["REPEATED_MASK_SETS", "SCANNERS", "Scanner", "make_synthetic_cohort"]
