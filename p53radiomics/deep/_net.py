"""The skorch network underneath :class:`SkorchCNNFeaturizer`, with its fast CUDA path.

:class:`CNNNet` is skorch's :class:`~skorch.NeuralNetClassifier` with four changes, each through
one of skorch's documented override points:

- on CUDA, the module is kept in channels-last memory format (``initialize_module``) and trained
  under bf16 autocast where the GPU supports it (``infer``); evaluation runs in float32 so that a
  network predicts the same on CUDA and, once pickled and loaded, on a CPU;
- batches come from :class:`ArrayBatches` (``iterator_train`` / ``iterator_valid``), which slices
  in-memory arrays instead of collating sample by sample; on CUDA it uploads the training crops
  once from pinned memory with a non-blocking copy, and batches are then cut on the GPU;
- :meth:`CNNNet.penultimate` gives the penultimate features batch by batch without gradients;
- pickling is device-neutral: the callbacks (best weights) go through ``torch.load``'s
  ``map_location`` with the module, so a net pickled on CUDA loads on a CPU-only machine without
  warnings; the optimizer's state, needed only to train further, is left out (a third of the size).
"""

import contextlib
import logging

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler
from torch.utils.data import Subset

__all__ = ["ArrayBatches", "CNNNet", "cuda_flags", "resolve_device"]

logger = logging.getLogger(__name__)

# Largest share of the free GPU memory that the training crops may take to be uploaded at once.
_PRELOAD_SHARE = 0.25


def resolve_device(device):
    """Turn ``"auto"`` into ``"cuda"`` when CUDA is available, else ``"cpu"``; check the rest."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; use device='auto' "
            "(CUDA when present, else the CPU) or device='cpu'."
        )
    return device


def _is_cuda(device):
    return torch.device(device).type == "cuda"


def cuda_flags(device, *, training):
    """cuDNN settings for one fit or one inference pass on ``device`` (no-op off CUDA).

    Autotuning is on (inputs have a fixed size). TF32 convolutions are allowed while training
    (autocast runs them in bf16 anyway) and refused for inference, so that predictions on CUDA
    match those of the same network on a CPU.
    """
    if not _is_cuda(device):
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(
        enabled=True, benchmark=True, deterministic=False, allow_tf32=training
    )


def _arrays(dataset):
    """The ``(X, y, indices)`` behind a skorch ``Dataset`` or nested ``Subset`` of one."""
    indices = None
    while isinstance(dataset, Subset):
        sub = np.asarray(dataset.indices)
        indices = sub if indices is None else sub[indices]
        dataset = dataset.dataset
    X = getattr(dataset, "X", None)
    if not isinstance(X, (np.ndarray, torch.Tensor)):
        raise TypeError(
            "ArrayBatches needs a skorch Dataset built on one array of crops, got "
            f"{type(dataset).__name__} holding {type(X).__name__}."
        )
    return X, getattr(dataset, "y", None), indices


class ArrayBatches:
    """Mini-batches cut from in-memory arrays: skorch's ``iterator_train``/``iterator_valid``.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset or torch.utils.data.Subset of one
        Holds the crops ``X`` as one array, and ``y`` or ``None``.
    batch_size : int
        Samples per batch. In training, a last batch of a single sample (which batch
        normalisation cannot train on) is merged into the one before.
    shuffle : bool, default=False
        New random order at each pass (torch's global CPU generator).
    device : str, default="cpu"
        On CUDA, batches are delivered on the GPU: the whole array is uploaded once (pinned
        memory, non-blocking copy) when it takes less than a quarter of the free GPU memory, else
        each batch is pinned and copied without blocking.
    """

    def __init__(self, dataset, batch_size, shuffle=False, device="cpu"):
        X, y, indices = _arrays(dataset)
        X = torch.as_tensor(X)
        if indices is not None:
            X = X[torch.as_tensor(indices)]
        if y is not None:
            y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
            if indices is not None:
                y = y[torch.as_tensor(indices)]
        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.device = device
        self._on_device = None

    def __len__(self):
        return len(self._bounds(len(self.X)))

    def _bounds(self, n):
        starts = list(range(0, n, self.batch_size))
        bounds = [(s, min(s + self.batch_size, n)) for s in starts]
        if self.shuffle and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], n)]
        return bounds

    def _to_device(self, t):
        if t.device.type == "cpu" and _is_cuda(self.device):
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def _source(self):
        if not _is_cuda(self.device):
            return self.X, self.y
        if self._on_device is None:
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            if self.X.element_size() * self.X.nelement() <= _PRELOAD_SHARE * free:
                y = None if self.y is None else self._to_device(self.y)
                self._on_device = (self._to_device(self.X), y)
            else:
                self._on_device = (self.X, self.y)
        return self._on_device

    def __iter__(self):
        X, y = self._source()
        n = len(X)
        order = torch.randperm(n) if self.shuffle else None
        for start, stop in self._bounds(n):
            if order is None:
                xb = X[start:stop]
                yb = None if y is None else y[start:stop]
            else:
                idx = order[start:stop].to(X.device, non_blocking=True)
                xb = X[idx]
                yb = None if y is None else y[idx.to(y.device)]
            if _is_cuda(self.device):
                xb = self._to_device(xb)
                yb = None if yb is None else self._to_device(yb)
            yield xb, yb


class CNNNet(NeuralNetClassifier):
    """skorch classifier with the CUDA fast path described in this module's docstring.

    Takes the parameters of :class:`skorch.NeuralNetClassifier`. The module must output logits
    (use ``criterion=torch.nn.CrossEntropyLoss``) and have a ``features(x)`` method returning the
    list of each branch's penultimate features.
    """

    def _cuda(self):
        return _is_cuda(self.device)

    def _bf16(self):
        return self._cuda() and torch.cuda.is_bf16_supported()

    def initialize_module(self):
        super().initialize_module()
        if self._cuda():
            self.module_ = self.module_.to(self.device, memory_format=torch.channels_last)
            self.module_.channels_last = True
        return self

    def infer(self, x, **fit_params):
        if not torch.is_tensor(x):
            return super().infer(x, **fit_params)
        x = x.to(self.device, non_blocking=True)
        if self.module_.training and self._bf16():
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                y = self.module_(x, **fit_params)
            return y.float()
        return self.module_(x, **fit_params)

    def penultimate(self, X):
        """Concatenated penultimate features of every branch, ``(n, n_branches * width)``."""
        iterator = self.get_iterator(self.get_dataset(X), training=False)
        self._set_training(False)
        out = []
        with torch.no_grad(), cuda_flags(self.device, training=False):
            for xb, _ in iterator:
                feats = self.module_.features(xb.to(self.device, non_blocking=True))
                out.append(torch.cat(feats, dim=1).float().cpu())
        return torch.cat(out).numpy()

    def predict_proba(self, X):
        with cuda_flags(self.device, training=False):
            return super().predict_proba(X)

    # skorch routes these attributes through torch.load's map_location when unpickling, so that a
    # net pickled on CUDA loads on a CPU-only machine. The callbacks join them: EarlyStopping keeps
    # the best weights and LRScheduler the optimizer, CUDA tensors both, which plain pickling would
    # try to restore on a GPU ("Attempting to deserialize object on a CUDA device"). Matching is by
    # prefix: "callbacks" covers the parameter, the fitted "callbacks_" and "callbacks__*".
    cuda_dependent_attributes_ = [*NeuralNetClassifier.cuda_dependent_attributes_, "callbacks"]

    def __getstate__(self):
        # The optimizer's state (AdamW keeps two moments per weight: twice the network's size, 268 MB
        # of a 403 MB pickled FF-ResNet18) only serves further training; a pickled model is for
        # prediction. It is left out, with the learning-rate scheduler that refers to it; training a
        # loaded net again starts a fresh optimizer (see partial_fit), and the scheduler is rebuilt
        # at the start of training as always.
        saved = {k: self.__dict__.pop(k) for k in ("optimizer_",) if k in self.__dict__}
        schedulers = [
            (cb, cb.lr_scheduler_)
            for _, cb in self.__dict__.get("callbacks_", [])
            if isinstance(cb, LRScheduler) and getattr(cb, "lr_scheduler_", None) is not None
        ]
        for cb, _ in schedulers:
            cb.lr_scheduler_ = None
        try:
            return super().__getstate__()
        finally:
            self.__dict__.update(saved)
            for cb, scheduler in schedulers:
                cb.lr_scheduler_ = scheduler

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if self.initialized_ and "optimizer_" not in self.__dict__:  # a net loaded from a pickle
            self.initialize_optimizer()
            for group in self.optimizer_.param_groups:  # the scheduler resumes at the epoch reached
                group.setdefault("initial_lr", group["lr"])
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def __setstate__(self, state):
        moved = _is_cuda(state["device"]) and not torch.cuda.is_available()
        if moved:
            logger.info("Network trained on %s loaded on the CPU.", state["device"])
            state["device"] = "cpu"
        super().__setstate__(state)
        if moved or not self._cuda():
            module = getattr(self, "module_", None)
            if isinstance(module, torch.nn.Module):
                module.to(memory_format=torch.contiguous_format)
                module.channels_last = False
            for key in ("iterator_train__device", "iterator_valid__device"):
                if key in self.__dict__ and _is_cuda(self.__dict__[key]):
                    self.__dict__[key] = "cpu"
