"""torchvision classification backbones, headless, with their penultimate widths and weights.

Any torchvision classification network whose head is a linear layer serves as a backbone: the
ResNets and DenseNet121 of the study, and ResNeXt, Wide ResNet, RegNet, EfficientNet (V1, V2),
MobileNet (V2, V3), MnasNet, ShuffleNet V2, ConvNeXt, VGG, AlexNet, GoogLeNet, Inception V3,
MaxViT, Swin (V1, V2) and ViT. The parts every backbone needs are found by torchvision's structure,
not listed by hand:

- the head is the last :class:`~torch.nn.Linear` registered (``fc`` of a ResNet, ``classifier`` of
  DenseNet, ``classifier[-1]`` of EfficientNet, ConvNeXt, MobileNet, VGG and MaxViT, ``head`` of
  Swin, ``heads.head`` of ViT); it is replaced by an identity, so the network outputs its
  penultimate feature vector, whose length is the head's ``in_features``;
- the first :class:`~torch.nn.Conv2d` registered (the stem, or the patch embedding of ViT and Swin)
  is adapted to the number of input channels;
- ``"imagenet"`` is the model's ``DEFAULT`` entry of torchvision's weights enum, and the smallest
  input it takes comes from that entry's ``min_size``.

A small table per family (the name's prefix) holds what the structure does not say: the layer
Grad-CAM reads (the last convolutional stage; for ViT the tokens entering the last encoder block,
reshaped to their grid), the builder argument that fixes the input size of ViT (``image_size``) and
MaxViT (``input_size``), and the auxiliary heads of GoogLeNet and Inception V3, which are left out.
SqueezeNet, whose head is a convolution, is not offered.

Weights come from torchvision's weights API (``"imagenet"``), from a state dict on disk, or are left
random. Downloading ImageNet weights runs under a time limit so that a machine without internet
access fails within seconds with a message saying what to do, rather than hanging.
"""

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "BACKBONES",
    "build_backbone",
    "cam_grid",
    "input_rule",
    "load_backbone_state_dict",
    "target_layer",
]

# Seconds to wait for torchvision's download of ImageNet weights before giving up. A machine
# without a route to the internet usually fails at once (name resolution); this bounds the case
# where packets are silently dropped.
IMAGENET_DOWNLOAD_TIMEOUT = 15.0

# Classes of torchvision's classification heads (ImageNet-1k): how the head is recognised.
_N_CLASSES = 1000


@dataclass(frozen=True)
class _Family:
    """What torchvision's structure does not say about a family of backbones."""

    target_layer: str  # where Grad-CAM reads activations; "[-1]" is the last child of a list
    tokens: bool = False  # that layer outputs ViT tokens (n, 1 + h * w, C), not a (n, C, h, w) map
    size_param: str | None = None  # builder argument fixing the input side (ViT, MaxViT)
    min_side: int | None = None  # smallest input side, where torchvision's min_size says more
    build_kwargs: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    ignored_keys: tuple = ()  # state-dict key prefixes of auxiliary heads, not built here


_NO_AUX = MappingProxyType({"aux_logits": False, "init_weights": True})

# By name prefix; a name takes the longest prefix it starts with.
_FAMILIES = {
    "resnet": _Family("layer4"),
    "resnext": _Family("layer4"),
    "wide_resnet": _Family("layer4"),
    "regnet": _Family("trunk_output"),
    "densenet": _Family("features"),
    "efficientnet": _Family("features"),
    "mobilenet": _Family("features"),
    "mnasnet": _Family("layers"),
    "shufflenet": _Family("conv5"),
    "convnext": _Family("features"),
    "vgg": _Family("features"),
    "alexnet": _Family("features"),
    "googlenet": _Family("inception5b", build_kwargs=_NO_AUX, ignored_keys=("aux1.", "aux2.")),
    "inception": _Family("Mixed_7c", build_kwargs=_NO_AUX, ignored_keys=("AuxLogits.",)),
    "maxvit": _Family("blocks[-1]", size_param="input_size"),
    # Swin pads its feature maps to whole windows, so it takes any side from 32 (its stride)
    # although its weights' min_size says 224 (the resolution they were trained at).
    "swin": _Family("permute", min_side=32),
    "vit": _Family("encoder.layers[-1].ln_1", tokens=True, size_param="image_size"),
}


def _family_of(name):
    prefixes = [p for p in _FAMILIES if name.startswith(p)]
    return _FAMILIES[max(prefixes, key=len)] if prefixes else None


class _Backbones(Mapping):
    """Read-only mapping of backbone names to penultimate widths, each computed on first access.

    The width is the ``in_features`` of the model's head, read from a model built with its weights
    on PyTorch's meta device (no memory, no initialisation), so listing all widths takes seconds.
    """

    def __init__(self, names):
        self._names = tuple(names)
        self._widths = {}

    def __getitem__(self, name):
        if name not in self._widths:
            if not (isinstance(name, str) and name in self._names):
                raise KeyError(name)
            self._widths[name] = _probe_width(name)
        return self._widths[name]

    def __contains__(self, name):
        return name in self._names

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return f"<{len(self)} torchvision backbones: {', '.join(self._names)}>"


#: Supported backbone names mapped to the width of their penultimate features (read-only; the
#: torchvision classification models of the families above).
BACKBONES = _Backbones(
    name
    for name in torchvision.models.list_models(module=torchvision.models)
    if _family_of(name) is not None
)


class _ParametersOnMeta(TorchFunctionMode):
    """Allocate the tensors that ``torch.empty`` makes (every layer's parameters) on the meta device.

    Unlike ``torch.device("meta")``, the small computations some builders run while building
    (RegNet derives its widths with torch) still run on the CPU.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _probe_width(name):
    with _ParametersOnMeta():
        model = _torchvision_model(name, None)
    return _head(model, name)[1].in_features


def _spec(name):
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; expected one of {sorted(BACKBONES)}.")
    return _family_of(name)


def _default_weights(name):
    return torchvision.models.get_model_weights(name).DEFAULT


def input_rule(name, input_size=None):
    """How backbone ``name`` wants its input resized: ``(side, exact)``.

    ``exact``: every input is resized to ``side x side`` (ViT and MaxViT, which are built for one
    input size, and any backbone when ``input_size`` is given). Otherwise inputs smaller than
    ``side`` (the smallest the network takes) are enlarged to it and others are left as they are.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    input_size : int, default=None
        Side the inputs are resized to; ``None``: the backbone's own need.

    Returns
    -------
    side : int
    exact : bool
    """
    family = _spec(name)
    min_size = _default_weights(name).meta["min_size"]
    if family.size_param is not None:
        return (int(min_size[0]) if input_size is None else int(input_size)), True
    min_side = family.min_side if family.min_side is not None else max(min_size)
    if input_size is None:
        return int(min_side), False
    if input_size < min_side:
        raise ValueError(
            f"input_size={input_size} is smaller than the {min_side}x{min_side} pixels that "
            f"backbone {name!r} needs."
        )
    return int(input_size), True


def _torchvision_model(name, size):
    """The torchvision model, random weights; ``size`` fixes the input side of ViT and MaxViT."""
    family = _spec(name)
    kwargs = dict(family.build_kwargs)
    if family.size_param is not None and size is not None:
        kwargs[family.size_param] = (size, size) if family.size_param == "input_size" else size
    try:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except (AssertionError, ValueError) as exc:  # ViT asserts its side is a multiple of its patch
        raise ValueError(
            f"Backbone {name!r} cannot be built for {size}x{size} inputs: {exc}"
        ) from exc


def _head(model, name):
    """Dotted path and module of the classification head: the last linear layer."""
    linears = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != _N_CLASSES:
        raise ValueError(f"Backbone {name!r} has no linear classification head to replace.")
    return linears[-1]


def _first_conv(model):
    """Dotted path and module of the first convolution (the stem, or the patch embedding)."""
    return next((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d))


def _resolve(model, path):
    """The submodule at ``path``, where ``[-1]`` takes the last child of a list or sequence."""
    module = model
    for part in re.findall(r"\[-1\]|[^.\[\]]+", path):
        module = list(module.children())[-1] if part == "[-1]" else module.get_submodule(part)
    return module


def target_layer(model, name):
    """The layer of a backbone built by :func:`build_backbone` whose output Grad-CAM weighs."""
    return _resolve(model, _spec(name).target_layer)


def cam_grid(model, name, activation):
    """The target layer's output (or its gradient) as a ``(n, C, h, w)`` map.

    Convolutional stages give such maps already; ViT gives tokens ``(n, 1 + h * w, C)``, whose class
    token is dropped and whose patch tokens are laid back on their ``h x w`` grid.
    """
    if not _spec(name).tokens:
        return activation
    side = model.image_size // model.patch_size
    patches = activation[:, 1:, :]
    return patches.transpose(1, 2).reshape(len(patches), -1, side, side)


def _imagenet_state_dict(name, timeout):
    weights = _default_weights(name)
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


# Old torchvision DenseNet checkpoints name layers 'norm.1', 'conv.2'...; torchvision renames them
# the same way when it loads its own weights (torchvision/models/densenet.py).
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _fit_state_dict(model, name, state_dict):
    """Keys renamed, auxiliary heads dropped, ViT position embeddings resized to the model."""
    family = _spec(name)
    state_dict = {_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state_dict.items()}
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(family.ignored_keys)}
    own = model.state_dict().get("encoder.pos_embedding")
    theirs = state_dict.get("encoder.pos_embedding")
    if family.tokens and own is not None and theirs is not None and own.shape != theirs.shape:
        # ViT weights trained at another resolution: torchvision's own bicubic interpolation of
        # the position embeddings over the patch grid (it writes into the dict it is given).
        from torchvision.models.vision_transformer import interpolate_embeddings

        state_dict = dict(
            interpolate_embeddings(model.image_size, model.patch_size, dict(state_dict))
        )
    return state_dict


def _load_into(model, name, state_dict):
    head = _head(model, name)[0] + "."
    state_dict = _fit_state_dict(model, name, state_dict)
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


def _adapt_first_conv(model, in_channels):
    path, old = _first_conv(model)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    with torch.no_grad():
        # Spread the RGB kernel evenly over the new channels: with one channel this is the sum
        # over RGB, i.e. exactly the network's answer to a grey image fed as three equal channels;
        # with 2k + 1 slices of a phase, the answer to a grey image repeated on every slice.
        mean = old.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (old.in_channels / in_channels))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    model.set_submodule(path, new)


def build_backbone(name, in_channels=3, state_dict=None, *, input_size=None):
    """Build a headless torchvision backbone whose output is its penultimate feature vector.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    in_channels : int, default=3
        Channels of the input; the first convolution (or patch embedding) is adapted when it is
        not 3.
    state_dict : dict, default=None
        Weights of the three-channel torchvision model (see :func:`load_backbone_state_dict`);
        ``None`` leaves torchvision's random initialisation. Head weights are ignored, and so are
        those of the auxiliary heads of GoogLeNet and Inception V3; ViT position embeddings of
        another resolution are interpolated to the model's.
    input_size : int, default=None
        Input side that ViT and MaxViT are built for (see :func:`input_rule`); ignored by the
        other backbones, which take any side.

    Returns
    -------
    backbone : torch.nn.Module
        Maps ``(n, in_channels, H, W)`` to ``(n, BACKBONES[name])``, ``H`` and ``W`` as
        :func:`input_rule` says.
    """
    side, _ = input_rule(name, input_size)
    model = _torchvision_model(name, side)
    if state_dict is not None:
        _load_into(model, name, state_dict)
    _adapt_first_conv(model, in_channels)
    path, head = _head(model, name)
    BACKBONES._widths.setdefault(name, head.in_features)
    model.set_submodule(path, nn.Identity())
    return model
