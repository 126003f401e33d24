"""Fusion of the clinical, radiomics and deep-learning models."""

from ._stacking import StackingFusion, negative_branch_weights

__all__ = ["StackingFusion", "negative_branch_weights"]
