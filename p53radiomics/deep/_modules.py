"""Torch modules of the CNN model: per-channel z-score, augmentation, and the two fusion modes.

Both networks take raw crops ``(n, n_phases, H, W)`` and hold everything that is applied to them
(z-score with statistics fitted on the training crops, augmentation in training mode only), so a
fitted network, Grad-CAM and a pickled featurizer all see the same inputs.

- :class:`MultiChannelNet` (MC, early fusion): the phases stacked as channels into one backbone.
- :class:`FeatureFusionNet` (FF, feature fusion): one backbone per phase; their penultimate
  features are concatenated and one linear head on the concatenation trains the branches end to
  end.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._backbones import BACKBONES, build_backbone, load_backbone_state_dict, target_layer_name

__all__ = ["FeatureFusionNet", "MultiChannelNet", "RandomCropFlip", "Standardize"]


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
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}.")
        self.backbone = backbone
        self.n_phases = int(n_phases)
        self.branch_width = BACKBONES[backbone]
        mean = [0.0] * self.n_phases if channel_mean is None else channel_mean
        std = [1.0] * self.n_phases if channel_std is None else channel_std
        self.standardize = Standardize(mean, std)
        self.augment = RandomCropFlip(crop_scale) if augment else nn.Identity()
        # Set by the skorch net on CUDA: inputs are then fed in channels-last memory format.
        self.channels_last = False
        state_dict = load_backbone_state_dict(backbone, weights)
        self.branches = nn.ModuleList(
            build_backbone(backbone, self._branch_channels(), state_dict)
            for _ in range(self._n_branches())
        )
        self.head = nn.Linear(self.branch_width * len(self.branches), int(n_classes))

    def _n_branches(self):
        raise NotImplementedError

    def _branch_channels(self):
        raise NotImplementedError

    def _split(self, x):
        """Split a standardised batch into the inputs of the branches."""
        raise NotImplementedError

    def target_layers(self):
        """The layer of each branch whose activations Grad-CAM weighs, in branch order."""
        name = target_layer_name(self.backbone)
        return [branch.get_submodule(name) for branch in self.branches]

    def features(self, x):
        """Penultimate features of each branch: a list of ``(n, branch_width)`` tensors."""
        x = self.augment(self.standardize(x))
        out = []
        for branch, xi in zip(self.branches, self._split(x), strict=True):
            if self.channels_last and xi.is_cuda:
                xi = xi.contiguous(memory_format=torch.channels_last)
            out.append(branch(xi))
        return out

    def forward(self, x):
        """Class logits ``(n, n_classes)`` of raw crops ``(n, n_phases, H, W)``."""
        return self.head(torch.cat(self.features(x), dim=1))


class MultiChannelNet(_PhaseNet):
    """MC fusion: the phases stacked as the channels of one backbone (early, pixel-level fusion).

    Parameters
    ----------
    backbone : str, default="resnet18"
        A key of :data:`~p53radiomics.deep.BACKBONES`.
    n_phases : int, default=3
        Input channels; the first convolution is adapted when it is not 3.
    n_classes : int, default=2
        Outputs of the linear head.
    weights : None, "imagenet" or path, default=None
        See :func:`~p53radiomics.deep._backbones.load_backbone_state_dict`.
    channel_mean, channel_std : sequence of float, default=None
        Per-phase z-score statistics (``None``: 0 and 1).
    augment : bool, default=True
        Random crop and flips in training mode.
    crop_scale : float, default=0.875
        See :class:`RandomCropFlip`.
    """

    def _n_branches(self):
        return 1

    def _branch_channels(self):
        return self.n_phases

    def _split(self, x):
        return [x]


class FeatureFusionNet(_PhaseNet):
    """FF fusion: one backbone per phase, penultimate features concatenated, one linear head.

    Parameters are those of :class:`MultiChannelNet`; each branch sees one phase as a single
    channel (its first convolution summed over RGB when weights are loaded).
    """

    def _n_branches(self):
        return self.n_phases

    def _branch_channels(self):
        return 1

    def _split(self, x):
        return [x[:, i : i + 1] for i in range(self.n_phases)]
