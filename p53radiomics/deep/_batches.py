"""Mini-batches for skorch cut from in-memory arrays, delivered on the training device."""

import numpy as np
import torch
from torch.utils.data import Subset

from ._device import is_cuda

__all__ = ["ArrayBatches"]

# Largest share of the free GPU memory that the training crops may take to be uploaded at once.
_PRELOAD_SHARE = 0.25


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
        each batch is pinned and copied without blocking. The random order of a pass is drawn on
        the CPU (the same order as on a CPU) and uploaded once per pass.
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
        if t.device.type == "cpu" and is_cuda(self.device):
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def _source(self):
        if not is_cuda(self.device):
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
        if order is not None and X.is_cuda:
            # One upload per pass: a copy from pageable memory for each batch would make the host
            # wait for the GPU at every batch.
            order = self._to_device(order)
        for start, stop in self._bounds(n):
            if order is None:
                xb = X[start:stop]
                yb = None if y is None else y[start:stop]
            else:
                idx = order[start:stop]
                xb = X[idx]
                yb = None if y is None else y[idx.to(y.device)]
            if is_cuda(self.device):
                xb = self._to_device(xb)
                yb = None if yb is None else self._to_device(yb)
            yield xb, yb
