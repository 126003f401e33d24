"""The CNN model of the study: torchvision backbones trained through skorch, and Grad-CAM.

- :class:`SkorchCNNFeaturizer` (``_featurizer.py``): the scikit-learn estimator, a classifier and a
  transformer into (PCA-compressed) penultimate features, in MC or FF fusion.
- :data:`BACKBONES` (``_backbones.py``): the backbones and their penultimate widths: the study's
  six (ResNet18/34/50/101/152, DenseNet121) and every other torchvision classification network
  with a linear head (EfficientNet, ConvNeXt, Swin, ViT...); headless, with adapted first
  convolutions (or patch embeddings), inputs resized as each needs, and ImageNet or state-dict
  weights.
- :class:`MultiChannelNet`, :class:`FeatureFusionNet` (``_modules.py``): the torch modules, for
  one channel per phase or 2.5D crops (several slices per phase).
- ``_net.py``: the skorch network underneath, with the CUDA fast path (the training step
  captured as a CUDA graph and replayed, bf16 autocast, channels-last, FF branches on concurrent
  CUDA streams, losses read once per epoch, pinned memory and non-blocking copies) and
  device-neutral pickling; :class:`CUDAGraphWarning` when a step cannot be captured. The CUDA
  graph machinery is in ``_graph.py``, the in-memory batches in ``_batches.py``, the device
  helpers in ``_device.py``; the featurizer's checks of its inputs in ``_crops.py`` and its PCA per
  branch in ``_pca.py``.
- :func:`grad_cam` (``_gradcam.py``): per-phase (FF) or joint (MC) heatmaps.

This sub-package needs only torch, torchvision, skorch, scikit-learn and numpy.
"""

from ..exceptions import CUDAGraphWarning
from ._backbones import BACKBONES
from ._featurizer import SkorchCNNFeaturizer
from ._gradcam import grad_cam
from ._modules import FeatureFusionNet, MultiChannelNet

__all__ = [
    "BACKBONES",
    "CUDAGraphWarning",
    "FeatureFusionNet",
    "MultiChannelNet",
    "SkorchCNNFeaturizer",
    "grad_cam",
]
