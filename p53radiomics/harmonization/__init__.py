"""Harmonisation of features across acquisition batches (scanners): ComBat, learnt on training data
and applied to new data, and adapted to the unlabelled features of batches unseen in training; and
the share of the features' variance that lies between batches, which a harmonisation brings down."""

from ._combat import ComBatHarmonizer, adapt_to_new_batches
from ._share import between_batch_share

__all__ = ["ComBatHarmonizer", "adapt_to_new_batches", "between_batch_share"]
