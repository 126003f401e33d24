"""Harmonisation of features across acquisition batches (scanners): ComBat, learnt on training data
and applied to new data."""

from ._combat import ComBatHarmonizer

__all__ = ["ComBatHarmonizer"]
