"""The CUDA-graph training step of :class:`~p53radiomics.deep._net.CNNNet` (see its Notes).

:class:`GraphStepMixin` holds the machinery: whether a fit can use the graph, the eager warm-up
steps on the capture's stream, the capture, the replays, and the fallback to the eager step with
one :class:`CUDAGraphWarning`. :class:`CNNNet` keeps skorch's override points (``train_step``,
``run_single_epoch``, ``get_iterator``) and calls into it.
"""

import contextlib
import logging
import numbers
import warnings

import torch
from skorch.callbacks import (
    EarlyStopping,
    EpochScoring,
    EpochTimer,
    LRScheduler,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)

from ..exceptions import CUDAGraphWarning

__all__ = ["GraphStepMixin"]

logger = logging.getLogger(__name__)

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


class GraphStepMixin:
    """The captured training step of a skorch net on CUDA, for :class:`CNNNet` (see its Notes).

    The host class provides ``cuda_graph``, ``_cuda()``, ``_bf16()`` and ``_compiled_branches()``;
    the step graph of a fit lives in ``_step_graph_`` from ``on_train_begin`` to ``on_train_end``.
    """

    #: Eager steps on batches of the training batch size before the capture.
    graph_warmup_steps = 3

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

    def _zero_grad_optimizer(self, set_to_none=None):
        graph = self.__dict__.get("_step_graph_")
        if graph is not None and graph.graph is not None:
            # An eager step between replays (a ragged batch) accumulates into the gradients the
            # graph writes, instead of into new ones.
            set_to_none = False
        super()._zero_grad_optimizer(set_to_none)

    def _graph_train_step(self, Xi, yi):
        """The step on the batch ``(Xi, yi)`` through the CUDA graph (warm-up, capture or
        replay); ``None`` where the batch must train eagerly (no graph, another size or dtype, a
        failed capture)."""
        graph = self.__dict__.get("_step_graph_")
        if (
            graph is None
            or not (torch.is_tensor(Xi) and torch.is_tensor(yi))
            or len(Xi) != graph.batch_size
        ):
            return None
        self._set_training(True)
        x = Xi.to(self.device, non_blocking=True)
        y = yi.to(self.device, non_blocking=True)
        if graph.warmup > 0:
            return self._warmup_step(graph, x, y)
        if graph.graph is not None and (
            (x.shape, x.dtype, y.shape, y.dtype)
            != (graph.x.shape, graph.x.dtype, graph.y.shape, graph.y.dtype)
        ):
            return None
        if graph.graph is None or graph.settings != _baked_settings(self.optimizer_):
            if not self._capture(graph, x, y):
                return None  # after one warning
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
