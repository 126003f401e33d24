"""The skorch network underneath :class:`SkorchCNNFeaturizer`, with its fast CUDA path.

:class:`CNNNet` is skorch's :class:`~skorch.NeuralNetClassifier` with these changes, each through
one of skorch's documented override points:

- on CUDA, the module is kept in channels-last memory format (``initialize_module``), FF's
  branches run concurrently on one CUDA stream each, and training runs under bf16 autocast where
  the GPU supports it (``infer``); evaluation runs in float32 so that a network predicts the same
  on CUDA and, once pickled and loaded, on a CPU;
- on CUDA, the whole training step (forward, loss, backward, fused AdamW step) is captured once as
  a CUDA graph and replayed for every batch of the training batch size (``train_step``; see
  :class:`CNNNet`); a batch of another size (the ragged last one) runs eagerly;
- losses stay on the device during an epoch and are read with one host sync at its end
  (``run_single_epoch``), unless a callback reads per-batch values as they come;
- batches come from :class:`ArrayBatches` (``iterator_train`` / ``iterator_valid``), which slices
  in-memory arrays instead of collating sample by sample; on CUDA it uploads the training crops
  once from pinned memory with a non-blocking copy, and batches are then cut on the GPU;
- :meth:`CNNNet.penultimate` gives the penultimate features batch by batch without gradients;
- pickling is device-neutral: the callbacks (best weights) go through ``torch.load``'s
  ``map_location`` with the module, so a net pickled on CUDA loads on a CPU-only machine without
  warnings; the optimizer's state, needed only to train further, is left out (a third of the
  size), and so is everything the CUDA graph holds.

On the CPU none of the CUDA machinery is used: the training step is skorch's own, and a fit is
reproducible with a seed.
"""

import contextlib
import logging
import numbers
import warnings

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import (
    Callback,
    EarlyStopping,
    EpochScoring,
    EpochTimer,
    LRScheduler,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)
from skorch.dataset import get_len, unpack_data
from torch.utils.data import Subset

from ..exceptions import CUDAGraphWarning

__all__ = ["ArrayBatches", "CNNNet", "cuda_flags", "resolve_device"]

logger = logging.getLogger(__name__)

# Largest share of the free GPU memory that the training crops may take to be uploaded at once.
_PRELOAD_SHARE = 0.25

# Callbacks that neither change what a training step computes (a captured CUDA graph would not
# see the change) nor act on gradients: with any other callback the net trains eagerly.
_GRAPH_SAFE_CALLBACKS = (
    EarlyStopping,
    EpochScoring,
    EpochTimer,
    LRScheduler,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)
# Callbacks that read no per-batch loss before the end of an epoch (EpochScoring keeps each
# batch's predictions, and scores them then): per-batch losses can wait for it.
_EPOCH_LEVEL_CALLBACKS = (EarlyStopping, EpochScoring, EpochTimer, PassthroughScoring, PrintLog)


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
            if _is_cuda(self.device):
                xb = self._to_device(xb)
                yb = None if yb is None else self._to_device(yb)
            yield xb, yb


@contextlib.contextmanager
def _host_syncs(enabled):
    """Collect the host-device synchronisations of the block (which a CUDA graph capture
    forbids) into the list it yields, through torch's sync debug mode; other warnings pass."""
    found = []
    if not enabled:
        yield found
        return
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    for w in caught:
        if "synchronizing CUDA operation" in str(w.message):
            found.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _plain(value):
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, numbers.Number, str))


def _baked_settings(optimizer):
    """What a captured optimizer step holds as constants: every group setting but the learning
    rate (which the graph reads from a tensor) and the parameters."""
    return [
        tuple((k, v) for k, v in group.items() if k not in ("params", "lr", "capturable"))
        for group in optimizer.param_groups
    ]


class _StepGraph:
    """The captured training step of one fit and the static tensors it reads and writes.

    Before the capture, ``warmup`` full-size batches train eagerly on ``stream`` (the capture's
    stream), so that cuDNN autotuning, cuBLAS workspaces, the optimizer's state and any
    compilation are done when the capture starts.
    """

    def __init__(self, device, warmup, bf16):
        self.stream = torch.cuda.Stream(device=device)
        self.warmup = int(warmup)
        self.bf16 = bool(bf16)  # autocast to bf16 (read once: nothing may query the GPU in capture)
        self.batch_size = None  # the batch size of the training iterator (get_iterator)
        self.graph = None
        self.x = self.y = self.y_pred = self.loss = None
        self.lr = []  # one 0-d tensor per param group, read by the captured optimizer step
        self.lr_values = []
        self.settings = None


class CNNNet(NeuralNetClassifier):
    """skorch classifier with the CUDA fast path described in this module's docstring.

    The module must output logits (use ``criterion=torch.nn.CrossEntropyLoss``) and have a
    ``features(x)`` method returning the list of each branch's penultimate features.

    Parameters
    ----------
    module, *args, **kwargs
        Those of :class:`skorch.NeuralNetClassifier`.
    cuda_graph : bool, default=True
        On CUDA, capture the training step as a CUDA graph and replay it (see Notes). Ignored on
        the CPU.
    compile_branches : bool, default=False
        On CUDA, train with the module's ``branches`` compiled by :func:`torch.compile`
        (``dynamic=False``; they share the module's parameters, and the module itself, which is
        pickled and used for inference, stays as it is). The first batches then take the time of
        the compilation (and a ragged last batch one more); it pays where eager kernels are small
        and many (DenseNet's concatenations). Ignored on the CPU.

    Attributes
    ----------
    graph_replays_ : int
        Training steps of the last ``fit`` or ``partial_fit`` replayed from the CUDA graph (0 on
        the CPU, or where the graph was not used).

    Notes
    -----
    The CUDA graph: after ``graph_warmup_steps`` eager steps on batches of the training batch
    size (run on the capture's stream, so that cuDNN autotuning, cuBLAS workspaces, the optimizer's
    state and any compilation are done by then), the step (forward under bf16 autocast, loss,
    backward, fused AdamW step) is captured on the next such batch and replayed for every later
    one: the batch is copied into static input tensors and one graph launch does the rest, without
    the host waiting for the GPU. The graph reads the learning rate from a tensor that follows the
    optimizer's, so ``LRScheduler`` works; a change of any other optimizer setting captures the
    step again. A batch of another size (the ragged last batch of an epoch) runs eagerly, on the
    same weights, optimizer state and gradients (its activations then take memory beside the
    graph's). The graph is used with a fused Adam or AdamW optimizer, without forward parameters
    passed to ``fit``, and with skorch's default callbacks, ``EpochScoring``, ``LRScheduler``,
    ``EarlyStopping`` and ``ProgressBar`` only: any other callback could change the step behind
    the graph's back, so the net then trains eagerly. A step that cannot be captured (it makes the
    host wait for the GPU, or the capture fails) is reported by one :class:`CUDAGraphWarning`,
    and the fit goes on with the eager step: slower, same results. The graph and its memory are
    released at the end of the fit and never pickled.
    """

    #: Eager steps on batches of the training batch size before the capture.
    graph_warmup_steps = 3

    def __init__(self, module, *args, cuda_graph=True, compile_branches=False, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.cuda_graph = cuda_graph
        self.compile_branches = compile_branches

    def _cuda(self):
        return _is_cuda(self.device)

    def _bf16(self):
        return self._cuda() and torch.cuda.is_bf16_supported()

    def initialize_module(self):
        super().initialize_module()
        if self._cuda():
            self.module_ = self.module_.to(self.device, memory_format=torch.channels_last)
            self.module_.channels_last = True
            self.module_.concurrent_branches = True
        return self

    def _compiled_branches(self):
        """The module's branches compiled by :func:`torch.compile` (training on CUDA with
        ``compile_branches``), made once per module; ``None`` otherwise."""
        branches = getattr(self.module_, "branches", None)
        if not (self.compile_branches and self._cuda()) or branches is None:
            return None
        cached = self.__dict__.get("_compiled_")
        if cached is None or cached[0] is not self.module_:
            cached = (self.module_, [torch.compile(b, dynamic=False) for b in branches])
            self._compiled_ = cached
        return cached[1]

    def infer(self, x, **fit_params):
        if not torch.is_tensor(x):
            return super().infer(x, **fit_params)
        x = x.to(self.device, non_blocking=True)
        if self.module_.training and self._cuda():
            branches = self._compiled_branches()
            if branches is not None:
                fit_params = {**fit_params, "branches": branches}
            if self._bf16():
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

    # ------------------------------------------------------------------ training loop

    def get_iterator(self, dataset, training=False):
        iterator = super().get_iterator(dataset, training=training)
        graph = self.__dict__.get("_step_graph_")
        if training and graph is not None:
            graph.batch_size = getattr(iterator, "batch_size", None)  # the graph's batch size
        return iterator

    def _graph_blocker(self):
        """Why this fit cannot replay its training step from a CUDA graph; ``None`` if it can."""
        if not (self.cuda_graph and self._cuda()):
            return "cuda_graph=False" if self._cuda() else "not on CUDA"
        optimizer = self.optimizer_
        if (
            list(self._optimizers) != ["optimizer"]
            or not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
            or not all(group.get("fused") for group in optimizer.param_groups)
        ):
            return f"the optimizer ({type(optimizer).__name__}) is not one fused Adam or AdamW"
        if not all(
            _plain(v) for group in optimizer.param_groups for k, v in group.items() if k != "params"
        ):
            return "an optimizer setting is a tensor"
        others = sorted(
            {
                type(cb).__name__
                for _, cb in self.callbacks_
                if type(cb) not in _GRAPH_SAFE_CALLBACKS
            }
        )
        if others:
            return f"callbacks {others} may change the training step"
        return None

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.graph_replays_ = 0
        self._step_graph_ = None
        reason = self._graph_blocker()
        if reason is None:
            self._step_graph_ = _StepGraph(self.device, self.graph_warmup_steps, self._bf16())
        elif self._cuda():
            logger.info("Training without a CUDA graph: %s.", reason)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self._step_graph_ = None  # the graph, its static tensors and its memory pool go
        super().on_train_end(net, X=X, y=y, **kwargs)

    def _reads_batch_losses(self):
        """Whether a callback may read per-batch values during an epoch."""
        for _, cb in self.callbacks_:
            kind = type(cb)
            if kind in _EPOCH_LEVEL_CALLBACKS:
                continue
            if kind is LRScheduler and cb.step_every != "batch":
                continue
            if (
                kind.on_batch_end is Callback.on_batch_end
                and kind.on_batch_begin is Callback.on_batch_begin
            ):
                continue
            return True
        return False

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over ``iterator``, reading the losses from the device once, at its end.

        The history gets what skorch's own loop records (``<prefix>_loss`` and
        ``<prefix>_batch_size`` for every batch, ``<prefix>_batch_count``), with the losses written
        after the last batch, so that the host does not wait for the GPU at every batch. Where a
        callback may read per-batch values as they come (``ProgressBar``, any callback with its
        own ``on_batch_begin`` or ``on_batch_end``), skorch's loop runs instead.
        """
        if iterator is None or self._reads_batch_losses():
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        losses = []
        with torch.autograd.profiler.record_function(f"{prefix}_epoch"):  # found by --profile
            for batch in iterator:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                losses.append(step["loss"].detach().reshape(()))
                first = batch[0] if isinstance(batch, (tuple, list)) else batch
                self.history.record_batch(prefix + "_batch_size", get_len(first))
                self.notify("on_batch_end", batch=batch, training=training, **step)
            values = torch.stack(losses).tolist() if losses else []  # the one host sync
        batches = self.history[-1]["batches"]
        for entry, value in zip(batches[len(batches) - len(values) :], values, strict=True):
            entry[prefix + "_loss"] = value
        self.history.record(prefix + "_batch_count", len(values))

    def _zero_grad_optimizer(self, set_to_none=None):
        graph = self.__dict__.get("_step_graph_")
        if graph is not None and graph.graph is not None:
            # An eager step between replays (a ragged batch) accumulates into the gradients the
            # graph writes, instead of into new ones.
            set_to_none = False
        super()._zero_grad_optimizer(set_to_none)

    def train_step(self, batch, **fit_params):
        """One optimisation step: replayed from the CUDA graph where it can be (see Notes),
        else skorch's eager step."""
        graph = self.__dict__.get("_step_graph_")
        Xi, yi = unpack_data(batch)
        if (
            graph is None
            or fit_params
            or not (torch.is_tensor(Xi) and torch.is_tensor(yi))
            or len(Xi) != graph.batch_size
        ):
            return super().train_step(batch, **fit_params)
        self._set_training(True)
        x = Xi.to(self.device, non_blocking=True)
        y = yi.to(self.device, non_blocking=True)
        if graph.warmup > 0:
            return self._warmup_step(graph, x, y)
        if graph.graph is not None and (
            (x.shape, x.dtype, y.shape, y.dtype)
            != (graph.x.shape, graph.x.dtype, graph.y.shape, graph.y.dtype)
        ):
            return super().train_step(batch, **fit_params)
        if graph.graph is None or graph.settings != _baked_settings(self.optimizer_):
            if not self._capture(graph, x, y):
                return super().train_step(batch, **fit_params)  # after one warning
        return self._replay(graph, x, y)

    def _step_body(self, x, y, bf16):
        """Forward, loss, backward and optimizer step: what the CUDA graph holds."""
        branches = self._compiled_branches()
        kwargs = {} if branches is None else {"branches": branches}
        # No autocast cache: a cast weight cached across the capture's boundary would be stale.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            y_pred = self.module_(x, **kwargs)
        y_pred = y_pred.float()
        loss = self.get_loss(y_pred, y, X=x, training=True)
        loss.backward()
        self.optimizer_.step()
        return y_pred.detach(), loss.detach()

    def _warmup_step(self, graph, x, y):
        main = torch.cuda.current_stream()
        graph.stream.wait_stream(main)
        # The last warm-up step also looks for host-device syncs, which a capture forbids.
        with torch.cuda.stream(graph.stream), _host_syncs(graph.warmup == 1) as syncs:
            self.optimizer_.zero_grad(set_to_none=True)
            y_pred, loss = self._step_body(x, y, graph.bf16)
        main.wait_stream(graph.stream)
        graph.warmup -= 1
        if syncs:
            self._give_up(f"the step makes the host wait for the GPU: {syncs[0]}")
        return {"loss": loss, "y_pred": y_pred}

    def _capture(self, graph, x, y):
        """Capture the step on the batch ``(x, y)`` (not run yet); False, after one warning, if
        it cannot be captured."""
        optimizer = self.optimizer_
        groups = optimizer.param_groups
        graph.graph = None  # an earlier capture (other optimizer settings) is released first
        graph.x, graph.y = x.clone(), y.clone()
        graph.lr = [torch.tensor(float(group["lr"]), device=x.device) for group in groups]
        graph.lr_values = [group["lr"] for group in groups]
        saved = [(group["lr"], group["capturable"]) for group in groups]
        optimizer.zero_grad(set_to_none=True)  # the captured backward allocates what it writes
        main = torch.cuda.current_stream()
        captured = torch.cuda.CUDAGraph()
        try:
            for group, lr in zip(groups, graph.lr, strict=True):
                group["lr"], group["capturable"] = lr, True
            with torch.cuda.graph(captured, stream=graph.stream):
                graph.y_pred, graph.loss = self._step_body(graph.x, graph.y, graph.bf16)
        except Exception as exc:  # whatever stops the capture, the batch then trains eagerly
            _leave_failed_capture(main, captured)
            message = (str(exc).strip().splitlines() or [""])[0]
            self._give_up(f"{type(exc).__name__}: {message}")
            optimizer.zero_grad(set_to_none=True)  # gradients the capture allocated, unwritten
            return False
        finally:
            for group, (lr, capturable) in zip(groups, saved, strict=True):
                group["lr"], group["capturable"] = lr, capturable
        graph.graph = captured
        graph.settings = _baked_settings(optimizer)
        return True

    def _replay(self, graph, x, y):
        groups = self.optimizer_.param_groups
        for i, (tensor, group) in enumerate(zip(graph.lr, groups, strict=True)):
            if group["lr"] != graph.lr_values[i]:  # e.g. LRScheduler's new value
                tensor.fill_(float(group["lr"]))
                graph.lr_values[i] = group["lr"]
        graph.x.copy_(x)
        graph.y.copy_(y)
        graph.graph.replay()
        self.graph_replays_ += 1
        # Copies: the graph overwrites its outputs at the next replay.
        return {"loss": graph.loss.clone(), "y_pred": graph.y_pred.clone()}

    def _give_up(self, reason):
        self._step_graph_ = None
        warnings.warn(
            f"The training step could not be captured as a CUDA graph ({reason}); the fit goes on "
            "with the eager step: the same results, more slowly.",
            CUDAGraphWarning,
            stacklevel=2,
        )

    # ------------------------------------------------------------------ pickling

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
        # at the start of training as always. So are a CUDA graph (only alive during a fit) and the
        # compiled branches (compiled again when needed).
        left_out = ("optimizer_", "_step_graph_", "_compiled_")
        saved = {k: self.__dict__.pop(k) for k in left_out if k in self.__dict__}
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
        # Nets pickled before the CUDA graph and compile_branches existed.
        state.setdefault("cuda_graph", True)
        state.setdefault("compile_branches", False)
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
                module.concurrent_branches = False
            for key in ("iterator_train__device", "iterator_valid__device"):
                if key in self.__dict__ and _is_cuda(self.__dict__[key]):
                    self.__dict__[key] = "cpu"


def _leave_failed_capture(stream, captured):
    """Clean up after a failed capture: make ``stream`` current again (a capture that CUDA
    invalidated skips leaving its own stream), drop the graph, and end one small capture well,
    which clears the "capturing" flag that an invalidated capture can leave on torch's CUDA
    generator (eager random numbers would then fail)."""
    torch.cuda.set_stream(stream)
    with contextlib.suppress(Exception):
        captured.reset()
    with contextlib.suppress(Exception):
        scratch = torch.zeros(1, device=stream.device)
        probe = torch.cuda.CUDAGraph()
        with torch.cuda.graph(probe):
            scratch.add_(1)
        del probe
    with contextlib.suppress(Exception):
        torch.cuda.set_stream(stream)
