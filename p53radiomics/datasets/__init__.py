"""Data sets: a synthetic three-phase DCE-MRI cohort that behaves like the study's."""

from ._synthetic import SCANNERS, Scanner, make_synthetic_cohort

__all__ = ["SCANNERS", "Scanner", "make_synthetic_cohort"]
