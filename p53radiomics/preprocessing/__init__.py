"""Image preprocessing: N4 bias-field correction, resampling and normalisation; the CNN's slice crops.

- :class:`N4Resampler`: cohort table to cohort table of preprocessed volumes (the study's N4,
  1-mm resampling and grey-level normalisation, with a crop around the ROI and a per-case cache);
- :class:`LargestSliceCropper`: cohort table to ``float32`` crops ``(n, n_phases, size, size)`` of the
  axial slice with the largest ROI, the CNN's input.
"""

from ._n4 import N4Resampler
from ._slices import LargestSliceCropper

__all__ = ["LargestSliceCropper", "N4Resampler"]
