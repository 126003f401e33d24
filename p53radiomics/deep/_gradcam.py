"""Grad-CAM heatmaps of a fitted :class:`SkorchCNNFeaturizer`: one per phase (FF) or joint (MC).

Implemented here with a forward hook per branch rather than with the ``grad-cam`` package
(pytorch-grad-cam): that package ships as a source distribution only and pulls in
``opencv-python-headless`` (a ~50 MB binary) and ``ttach`` for what is a dozen lines of torch, and
it averages the maps of several target layers into one, whereas feature fusion needs one map per
branch. The hooks read the activations of each branch's last convolutional stage; their
gradients come from :func:`torch.autograd.grad`, so no ``.grad`` of any parameter is touched.

Token-based backbones get maps too. Swin's stages output maps (channels last), which torchvision
permutes to ``(n, C, h, w)`` before pooling: that permuted output is the target. ViT's last encoder
output feeds the class token only, so its patch tokens carry no gradient; the target is the input
of the last encoder block's attention (its first layer norm), whose patch tokens are laid back on
their grid (the class token dropped), as is usual for ViT Grad-CAM.

Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017.
"""

import numpy as np
import torch
import torch.nn.functional as F

from ._crops import validated_crops
from ._device import cuda_flags

__all__ = ["grad_cam"]


def _target_indices(estimator, target, logits):
    if target is None:
        return logits.argmax(dim=1)
    matches = np.flatnonzero(estimator.classes_ == target)
    if matches.size != 1:
        raise ValueError(
            f"target={target!r} is not one of the classes {estimator.classes_.tolist()}; pass "
            "None to explain each sample's predicted class."
        )
    return torch.full((logits.shape[0],), int(matches[0]), device=logits.device)


def grad_cam(estimator, X, *, target=None):
    """Grad-CAM heatmaps of a fitted featurizer at crop resolution.

    For each sample and branch, the activations ``A`` of the branch's last convolutional stage
    (``layer4`` of a ResNet, ResNeXt or Wide ResNet; ``features`` of DenseNet, EfficientNet,
    MobileNet, ConvNeXt, VGG and AlexNet; ``trunk_output`` of RegNet; ``layers`` of MnasNet;
    ``conv5`` of ShuffleNet; the last block of MaxViT, GoogLeNet and Inception V3; Swin's output
    permuted to ``(n, C, h, w)``; for ViT the patch tokens entering the last encoder block, on
    their grid) are weighted by the spatial mean of the gradient of the target class's logit,
    summed over channels and rectified: ``relu(sum_k mean_ij(d score / d A_kij) * A_k)``; the map
    is resized bilinearly to the crop size and divided by its maximum.

    Parameters
    ----------
    estimator : SkorchCNNFeaturizer
        Fitted.
    X : array-like of shape (n_samples, n_channels, height, width)
        Crops, as given to ``fit`` (one channel per phase, or 2.5D crops with several).
    target : class label, default=None
        Class whose logit is explained; ``None`` explains each sample's predicted class.

    Returns
    -------
    heatmaps : ndarray of shape (n_samples, n_maps, height, width), dtype float32
        Values in ``[0, 1]`` (1 at each map's maximum, all zeros where no location raises the
        score). ``n_maps`` is the number of phases in feature fusion (one map per phase, in phase
        order, whatever the number of slices per phase) and 1 in multi-channel fusion (the joint
        map).
    """
    X = validated_crops(estimator, X)  # fitted, same shape and dtype as in fit
    net = estimator.net_
    module = net.module_
    layers = module.target_layers()
    activations = [None] * len(layers)

    def keep(i):
        def hook(_module, _inputs, output):
            activations[i] = output

        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    size = X.shape[-2:]
    maps = []
    try:
        with cuda_flags(net.device, training=False):
            for xb in net.eval_batches(X):  # in evaluation mode, on the net's device
                with torch.enable_grad():
                    logits = module(xb).float()
                    index = _target_indices(estimator, target, logits)
                    score = logits.gather(1, index[:, None]).sum()
                    grads = torch.autograd.grad(score, activations)
                with torch.no_grad():
                    batch = []
                    for act, grad in zip(activations, grads, strict=True):
                        act, grad = module.cam_grid(act), module.cam_grid(grad)
                        weights = grad.float().mean(dim=(2, 3), keepdim=True)
                        cam = F.relu((weights * act.float()).sum(dim=1, keepdim=True))
                        batch.append(
                            F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
                        )
                    cams = torch.cat(batch, dim=1)
                    # One scale for all maps of a sample, so that a phase that does not drive the
                    # decision stays dark instead of having its noise stretched to full range.
                    peak = cams.amax(dim=(1, 2, 3), keepdim=True)
                    maps.append(torch.where(peak > 0, cams / peak.clamp_min(1e-12), 0.0).cpu())
    finally:
        for handle in handles:
            handle.remove()
        activations.clear()
    return torch.cat(maps).clamp_(0.0, 1.0).numpy().astype(np.float32, copy=False)
