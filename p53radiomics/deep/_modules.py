"""Torch modules of the CNN model: per-channel z-score, augmentation, and the two fusion modes.

Both networks take raw crops ``(n, n_phases * channels_per_phase, H, W)`` (one channel per phase,
or, for 2.5D crops, the ``2k + 1`` slices around each phase's largest slice, phase after phase) and
hold everything that is applied to them (z-score with statistics fitted on the training crops,
augmentation in training mode only, resizing to the size the backbone needs), so a fitted network,
Grad-CAM and a pickled featurizer all see the same inputs.

- :class:`MultiChannelNet` (MC, early fusion): all channels stacked into one backbone.
- :class:`FeatureFusionNet` (FF, feature fusion): one backbone per phase, taking that phase's
  channels; their penultimate features are concatenated and one linear head on the concatenation
  trains the branches end to end. On CUDA (when the skorch net sets ``concurrent_branches``) the
  branches run concurrently, one CUDA stream each, joined before the head.
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ._backbones import (
    BACKBONES,
    build_backbone,
    cam_grid,
    input_rule,
    load_backbone_state_dict,
    target_layer,
)

__all__ = ["FeatureFusionNet", "MultiChannelNet", "RandomCropFlip", "Standardize"]


@functools.cache
def _branch_streams(device, n):
    """``n`` CUDA streams of ``device`` for the branches, made once per process and reused (a
    captured CUDA graph keeps referring to the streams it was captured on)."""
    return tuple(torch.cuda.Stream(device=device) for _ in range(n))


def _run_concurrently(branches, inputs, prepare):
    """Run ``branch(prepare(x))`` for each branch on its own CUDA stream; join them.

    Each stream first waits for the current one (the inputs are ready), runs its branch (its
    backward pass then runs on the same stream: autograd records the stream of every forward op),
    and the current stream waits for all of them before their outputs are used. Tensors crossing
    streams are marked with ``record_stream`` so that the caching allocator does not hand their
    memory to another tensor while a stream still reads it. Works the same inside a CUDA graph
    capture, where the waits become the graph's edges.
    """
    main = torch.cuda.current_stream(inputs[0].device)
    streams = _branch_streams(inputs[0].device, len(branches))
    outputs = []
    for branch, x, stream in zip(branches, inputs, streams, strict=True):
        stream.wait_stream(main)
        with torch.cuda.stream(stream):
            x.record_stream(stream)
            outputs.append(branch(prepare(x)))
    for out, stream in zip(outputs, streams, strict=True):
        main.wait_stream(stream)
        out.record_stream(main)
    return outputs


class Standardize(nn.Module):
    """Per-channel z-score with fixed statistics, stored as buffers (they move and pickle along).

    Parameters
    ----------
    mean, std : sequence of float
        One value per channel.
    """

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x):
        return (x - self.mean) / self.std


class RandomCropFlip(nn.Module):
    """Random crop resized back to full size, and random horizontal and vertical flips.

    Applied per sample, on the device holding the batch (one ``grid_sample`` call), in training
    mode only; in evaluation mode it returns its input unchanged. Random numbers come from torch's
    global generator of that device, so seeding torch makes it reproducible.

    Parameters
    ----------
    scale : float, default=0.875
        Smallest side of the crop as a fraction of the image side; each sample's crop side is
        drawn uniformly in ``[scale, 1]`` and its position uniformly inside the image.
    """

    def __init__(self, scale=0.875):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x):
        if not self.training:
            return x
        n = x.shape[0]
        opts = {"device": x.device, "dtype": torch.float32}
        side = torch.empty(n, **opts).uniform_(self.scale, 1.0)
        shift_x = (torch.rand(n, **opts) * 2 - 1) * (1 - side)
        shift_y = (torch.rand(n, **opts) * 2 - 1) * (1 - side)
        flip_x = torch.where(torch.rand(n, **opts) < 0.5, -1.0, 1.0)
        flip_y = torch.where(torch.rand(n, **opts) < 0.5, -1.0, 1.0)
        zero = torch.zeros(n, **opts)
        theta = torch.stack(
            [
                torch.stack([side * flip_x, zero, shift_x], dim=1),
                torch.stack([zero, side * flip_y, shift_y], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
        ).to(x.dtype)


class _PhaseNet(nn.Module):
    """Shared body of the two fusion networks; subclasses define how phases reach branches."""

    # Defaults for networks pickled before these attributes existed (one channel per phase,
    # backbones that take the crops as they are).
    channels_per_phase = 1
    resize_side = 1
    resize_exact = False
    # Set by the skorch net on CUDA: branches of FF then run concurrently, one CUDA stream each,
    # in training and in inference without gradients (Grad-CAM keeps them sequential).
    concurrent_branches = False

    def __init__(
        self,
        backbone="resnet18",
        n_phases=3,
        n_classes=2,
        weights=None,
        channel_mean=None,
        channel_std=None,
        augment=True,
        crop_scale=0.875,
        channels_per_phase=1,
        input_size=None,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}.")
        self.backbone = backbone
        self.n_phases = int(n_phases)
        self.channels_per_phase = int(channels_per_phase)
        n_channels = self.n_phases * self.channels_per_phase
        self.resize_side, self.resize_exact = input_rule(backbone, input_size)
        mean = [0.0] * n_channels if channel_mean is None else channel_mean
        std = [1.0] * n_channels if channel_std is None else channel_std
        self.standardize = Standardize(mean, std)
        self.augment = RandomCropFlip(crop_scale) if augment else nn.Identity()
        # Set by the skorch net on CUDA: inputs are then fed in channels-last memory format.
        self.channels_last = False
        state_dict = load_backbone_state_dict(backbone, weights)
        self.branches = nn.ModuleList(
            build_backbone(backbone, self._branch_channels(), state_dict, input_size=input_size)
            for _ in range(self._n_branches())
        )
        self.branch_width = BACKBONES[backbone]
        self.head = nn.Linear(self.branch_width * len(self.branches), int(n_classes))

    def _n_branches(self):
        raise NotImplementedError

    def _branch_channels(self):
        raise NotImplementedError

    def _split(self, x):
        """Split a standardised batch into the inputs of the branches."""
        raise NotImplementedError

    def _resize(self, x):
        """Resize a batch to the side the backbone needs (bilinear, antialiased), if it must."""
        h, w = x.shape[-2:]
        side = self.resize_side
        size = (side, side) if self.resize_exact else (max(h, side), max(w, side))
        if (h, w) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    def target_layers(self):
        """The layer of each branch whose activations Grad-CAM weighs, in branch order."""
        return [target_layer(branch, self.backbone) for branch in self.branches]

    def cam_grid(self, activation):
        """A target layer's output (or its gradient) as a ``(n, C, h, w)`` map (ViT tokens laid
        back on their grid; the maps of convolutional stages as they are)."""
        return cam_grid(self.branches[0], self.backbone, activation)

    def _branch_input(self, x):
        if self.channels_last and x.is_cuda:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def features(self, x, branches=None):
        """Penultimate features of each branch: a list of ``(n, branch_width)`` tensors.

        ``branches`` (callables in branch order, e.g. the branches compiled with
        :func:`torch.compile` sharing their parameters) replaces ``self.branches`` for this call.
        """
        x = self._resize(self.augment(self.standardize(x)))
        branches = self.branches if branches is None else branches
        inputs = self._split(x)
        concurrent = (
            self.concurrent_branches
            and x.is_cuda
            and len(inputs) > 1
            and (self.training or not torch.is_grad_enabled())
        )
        if concurrent:
            return _run_concurrently(branches, inputs, self._branch_input)
        return [branch(self._branch_input(xi)) for branch, xi in zip(branches, inputs, strict=True)]

    def forward(self, x, branches=None):
        """Class logits ``(n, n_classes)`` of raw crops ``(n, n_phases * channels_per_phase, H, W)``.

        ``branches``: see :meth:`features`.
        """
        return self.head(torch.cat(self.features(x, branches), dim=1))


class MultiChannelNet(_PhaseNet):
    """MC fusion: all channels stacked into one backbone (early, pixel-level fusion).

    Parameters
    ----------
    backbone : str, default="resnet18"
        A key of :data:`~p53radiomics.deep.BACKBONES`.
    n_phases : int, default=3
        Number of phases.
    n_classes : int, default=2
        Outputs of the linear head.
    weights : None, "imagenet" or path, default=None
        See :func:`~p53radiomics.deep._backbones.load_backbone_state_dict`.
    channel_mean, channel_std : sequence of float, default=None
        Per-channel z-score statistics (``None``: 0 and 1).
    augment : bool, default=True
        Random crop and flips in training mode.
    crop_scale : float, default=0.875
        See :class:`RandomCropFlip`.
    channels_per_phase : int, default=1
        Channels of each phase (``2k + 1`` slices for 2.5D crops). The input has
        ``n_phases * channels_per_phase`` channels, phase after phase; the first convolution is
        adapted when that is not 3.
    input_size : int, default=None
        Side the crops are resized to before the backbone; ``None``: the backbone's own need
        (see :func:`~p53radiomics.deep._backbones.input_rule`).
    """

    def _n_branches(self):
        return 1

    def _branch_channels(self):
        return self.n_phases * self.channels_per_phase

    def _split(self, x):
        return [x]


class FeatureFusionNet(_PhaseNet):
    """FF fusion: one backbone per phase, penultimate features concatenated, one linear head.

    Parameters are those of :class:`MultiChannelNet`; each branch sees the ``channels_per_phase``
    channels of its phase (one channel: the first convolution summed over RGB when weights are
    loaded).
    """

    def _n_branches(self):
        return self.n_phases

    def _branch_channels(self):
        return self.channels_per_phase

    def _split(self, x):
        c = self.channels_per_phase
        return [x[:, i * c : (i + 1) * c] for i in range(self.n_phases)]
