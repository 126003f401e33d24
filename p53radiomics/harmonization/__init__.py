"""Harmonisation of features across acquisition batches (scanners): ComBat, learnt on training data
and applied to new data, and adapted to the unlabelled features of batches unseen in training."""

from ._combat import ComBatHarmonizer, adapt_to_new_batches

__all__ = ["ComBatHarmonizer", "adapt_to_new_batches"]
