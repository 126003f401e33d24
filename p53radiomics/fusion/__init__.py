"""Fusion of the clinical, radiomics and deep-learning models."""

from ._stacking import StackingFusion

__all__ = ["StackingFusion"]
