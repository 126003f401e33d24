"""The six torchvision backbones of the study, headless, with their penultimate widths and weights.

Each backbone is a torchvision classification network whose head (``fc`` for the ResNets,
``classifier`` for DenseNet121) is replaced by an identity, so that its output is the
penultimate feature vector (globally average-pooled). The first convolution is adapted to the
number of input channels: one per phase in feature fusion, all phases at once in multi-channel
fusion.

Weights come from torchvision's weights API (``"imagenet"``), from a state dict on disk, or are left
random. Downloading ImageNet weights runs under a time limit so that a machine without internet
access fails within seconds with a message saying what to do, rather than hanging.
"""

import os
import re
import threading
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

__all__ = ["BACKBONES", "build_backbone", "load_backbone_state_dict"]

# Seconds to wait for torchvision's download of ImageNet weights before giving up. A machine
# without a route to the internet usually fails at once (name resolution); this bounds the case
# where packets are silently dropped.
IMAGENET_DOWNLOAD_TIMEOUT = 15.0


@dataclass(frozen=True)
class _BackboneSpec:
    width: int  # length of the penultimate feature vector
    first_conv: str  # dotted path of the first convolution
    head: str  # attribute holding the classification head, replaced by an identity
    target_layer: str  # last convolutional stage, where Grad-CAM reads activations


_SPECS = {
    "resnet18": _BackboneSpec(512, "conv1", "fc", "layer4"),
    "resnet34": _BackboneSpec(512, "conv1", "fc", "layer4"),
    "resnet50": _BackboneSpec(2048, "conv1", "fc", "layer4"),
    "resnet101": _BackboneSpec(2048, "conv1", "fc", "layer4"),
    "resnet152": _BackboneSpec(2048, "conv1", "fc", "layer4"),
    "densenet121": _BackboneSpec(1024, "features.conv0", "classifier", "features"),
}

#: Supported backbone names mapped to the width of their penultimate features (read-only).
BACKBONES = MappingProxyType({name: spec.width for name, spec in _SPECS.items()})

# Old torchvision DenseNet checkpoints name layers 'norm.1', 'conv.2'...; torchvision renames them
# the same way when it loads its own weights (torchvision/models/densenet.py).
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _spec(name):
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; expected one of {sorted(_SPECS)}.") from None


def target_layer_name(name):
    """Dotted name of the layer whose activations Grad-CAM uses for backbone ``name``."""
    return _spec(name).target_layer


def _imagenet_state_dict(name, timeout):
    weights = torchvision.models.get_model_weights(name).DEFAULT
    filename = os.path.basename(urlparse(weights.url).path)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    advice = (
        f"On a machine without internet access, download {weights.url} elsewhere and copy it to "
        f"{cached} (torchvision's cache; TORCH_HOME moves it), or pass weights='<path to a state "
        "dict>' instead of 'imagenet'."
    )
    result = {}

    def fetch():
        try:
            result["state_dict"] = weights.get_state_dict(progress=False, check_hash=True)
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller's thread
            result["error"] = exc

    # torch.hub opens its connection without a timeout and name resolution ignores socket
    # timeouts, so the download runs in a daemon thread that the caller stops waiting for.
    thread = threading.Thread(target=fetch, name=f"imagenet-weights-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OSError(
            f"ImageNet weights for {name!r} ({weights}) are not cached and their download from "
            f"{weights.url} did not finish within {timeout:g} s. {advice}"
        )
    if "error" in result:
        error = result["error"]
        raise OSError(
            f"ImageNet weights for {name!r} ({weights}) are not cached and could not be "
            f"downloaded from {weights.url}: {error}. {advice}"
        ) from error
    return result["state_dict"]


def _file_state_dict(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights={path!r}: no such file. Expected None (random initialisation), "
            "'imagenet', or the path of a state dict saved with torch.save(model.state_dict())."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"weights={path!r} could not be read as a state dict: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps the state dict
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(
            f"weights={path!r} does not hold a state dict (a mapping of parameter names to "
            f"tensors) but a {type(state).__name__}."
        )
    # Checkpoints saved from nn.DataParallel prefix every key with 'module.'.
    return {re.sub(r"^module\.", "", key): value for key, value in state.items()}


def load_backbone_state_dict(name, weights, *, timeout=None):
    """Return the state dict that ``weights`` designates for backbone ``name``, or ``None``.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    weights : None, "imagenet", str or os.PathLike
        ``None`` for random initialisation; ``"imagenet"`` for torchvision's default ImageNet
        weights (from its cache, else downloaded under ``timeout``); else the path of a state dict
        of the torchvision model (as ``torch.save(model.state_dict(), path)`` writes it; a
        ``{"state_dict": ...}`` checkpoint and ``module.`` prefixes are accepted).
    timeout : float, default=None
        Seconds to wait for a download; ``None`` uses ``IMAGENET_DOWNLOAD_TIMEOUT``.

    Returns
    -------
    state_dict : dict of str to torch.Tensor, or None
        Keys as in the three-channel torchvision model, on the CPU.

    Raises
    ------
    OSError
        ImageNet weights neither cached nor downloadable in time (the message says what to do).
    FileNotFoundError, ValueError
        A path that does not exist or does not hold a state dict.
    """
    _spec(name)
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        return _imagenet_state_dict(name, IMAGENET_DOWNLOAD_TIMEOUT if timeout is None else timeout)
    if isinstance(weights, (str, os.PathLike)):
        return _file_state_dict(weights)
    raise TypeError(
        f"weights must be None, 'imagenet' or a path to a state dict, got {type(weights).__name__}."
    )


def _load_into(model, name, state_dict):
    spec = _spec(name)
    state_dict = {_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state_dict.items()}
    head = spec.head + "."
    trunk = {k: v for k, v in state_dict.items() if not k.startswith(head)}
    try:
        result = model.load_state_dict(trunk, strict=False)
    except RuntimeError as exc:  # shape mismatches are raised even when strict=False
        raise ValueError(f"The state dict does not fit backbone {name!r}: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith(head)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"The state dict does not fit backbone {name!r}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(result.unexpected_keys)} unexpected keys "
            f"{result.unexpected_keys[:5]}."
        )


def _adapt_first_conv(model, name, in_channels):
    path = _spec(name).first_conv
    parent_name, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        # Spread the RGB kernel evenly over the new channels: with one channel this is the sum
        # over RGB, i.e. exactly the network's answer to a grey image fed as three equal channels.
        mean = old.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (old.in_channels / in_channels))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(parent, attr, new)


def build_backbone(name, in_channels=3, state_dict=None):
    """Build a headless torchvision backbone whose output is its penultimate feature vector.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    in_channels : int, default=3
        Channels of the input; the first convolution is adapted when it is not 3.
    state_dict : dict, default=None
        Weights of the three-channel torchvision model (see :func:`load_backbone_state_dict`);
        ``None`` leaves torchvision's random initialisation. Head weights are ignored.

    Returns
    -------
    backbone : torch.nn.Module
        Maps ``(n, in_channels, H, W)`` to ``(n, BACKBONES[name])``.
    """
    spec = _spec(name)
    model = torchvision.models.get_model(name, weights=None)
    if state_dict is not None:
        _load_into(model, name, state_dict)
    _adapt_first_conv(model, name, in_channels)
    setattr(model, spec.head, nn.Identity())
    return model
