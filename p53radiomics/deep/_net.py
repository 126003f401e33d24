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
reproducible with a seed. The CUDA-graph machinery is in ``_graph.py`` (:class:`CNNNet` inherits
it), :class:`ArrayBatches` in ``_batches.py``, the device helpers in ``_device.py``.
"""

import logging

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
from skorch.dataset import ValidSplit, get_len, unpack_data
from torch import nn

# ArrayBatches lives in _batches.py and the device helpers in _device.py; they are imported here
# too, as this module's public names: pickles of earlier versions name p53radiomics.deep._net.
from ._batches import ArrayBatches
from ._device import cuda_flags, is_cuda, resolve_device
from ._graph import GraphStepMixin
from ._modules import FeatureFusionNet, MultiChannelNet

__all__ = [
    "ArrayBatches",
    "CNNNet",
    "cuda_flags",
    "featurizer_net",
    "resolve_device",
]

logger = logging.getLogger(__name__)

# Callbacks that read no per-batch loss before the end of an epoch (EpochScoring keeps each
# batch's predictions, and scores them then): per-batch losses can wait for it.
_EPOCH_LEVEL_CALLBACKS = (EarlyStopping, EpochScoring, EpochTimer, PassthroughScoring, PrintLog)


class CNNNet(GraphStepMixin, NeuralNetClassifier):
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

    def __init__(self, module, *args, cuda_graph=True, compile_branches=False, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.cuda_graph = cuda_graph
        self.compile_branches = compile_branches

    def _cuda(self):
        return is_cuda(self.device)

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

    def eval_batches(self, X):
        """Put the network in evaluation mode and yield the batches of ``X`` on its device.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops.

        Yields
        ------
        xb : torch.Tensor of shape (batch_size, n_channels, height, width)
            One batch (the last one may be smaller), on ``device``, in the order of ``X``.
        """
        iterator = self.get_iterator(self.get_dataset(X), training=False)
        self._set_training(False)
        for xb, _ in iterator:
            yield xb.to(self.device, non_blocking=True)

    def penultimate(self, X):
        """Concatenated penultimate features of every branch, ``(n, n_branches * width)``."""
        out = []
        with torch.no_grad(), cuda_flags(self.device, training=False):
            for xb in self.eval_batches(X):
                feats = self.module_.features(xb)
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

    def train_step(self, batch, **fit_params):
        """One optimisation step: replayed from the CUDA graph where it can be (see Notes),
        else skorch's eager step."""
        Xi, yi = unpack_data(batch)
        step = None if fit_params else self._graph_train_step(Xi, yi)
        return super().train_step(batch, **fit_params) if step is None else step

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
        moved = is_cuda(state["device"]) and not torch.cuda.is_available()
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
                if key in self.__dict__ and is_cuda(self.__dict__[key]):
                    self.__dict__[key] = "cpu"


def _training_callbacks(*, lr_schedule, max_epochs, validation_fraction, patience, verbose, seed):
    """The ``(callbacks, train_split)`` of a :class:`CNNNet` for these featurizer settings.

    Cosine annealing over ``max_epochs`` (``lr_schedule="cosine"``); with a
    ``validation_fraction``, a stratified split seeded by ``seed`` and early stopping on the
    validation loss that restores the best weights; a progress bar over batches at
    ``verbose >= 2``.
    """
    callbacks = []
    if lr_schedule == "cosine" and max_epochs > 0:
        schedule = LRScheduler(policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=max_epochs)
        callbacks.append(("lr_schedule", schedule))
    train_split = None
    if validation_fraction is not None:
        train_split = ValidSplit(validation_fraction, stratified=True, random_state=seed)
        stopping = EarlyStopping(monitor="valid_loss", patience=patience, load_best=True)
        callbacks.append(("early_stopping", stopping))
    if verbose >= 2:
        callbacks.append(("progress", ProgressBar()))
    return callbacks, train_split


def featurizer_net(cnn, n_classes, seed, device):
    """The unfitted :class:`CNNNet` that the :class:`SkorchCNNFeaturizer` ``cnn`` trains.

    Built from ``cnn``'s parameters and the input statistics its ``fit`` has set
    (``n_phases_``, ``channels_per_phase_``, ``channel_mean_``, ``channel_std_``), for
    ``n_classes`` classes on ``device``; ``seed`` seeds the validation split.
    """
    cuda = is_cuda(device)
    callbacks, train_split = _training_callbacks(
        lr_schedule=cnn.lr_schedule,
        max_epochs=cnn.max_epochs,
        validation_fraction=cnn.validation_fraction,
        patience=cnn.patience,
        verbose=cnn.verbose,
        seed=seed,
    )
    optimizer_params = {"optimizer__weight_decay": cnn.weight_decay}
    if cuda:
        optimizer_params["optimizer__fused"] = True
    return CNNNet(
        FeatureFusionNet if cnn.mode == "ff" else MultiChannelNet,
        module__backbone=cnn.backbone,
        module__n_phases=cnn.n_phases_,
        module__channels_per_phase=cnn.channels_per_phase_,
        module__input_size=cnn.input_size,
        module__n_classes=n_classes,
        module__weights=cnn.weights,
        module__channel_mean=cnn.channel_mean_.tolist(),
        module__channel_std=cnn.channel_std_.tolist(),
        module__augment=cnn.augment,
        module__crop_scale=cnn.crop_scale,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=cnn.lr,
        max_epochs=cnn.max_epochs,
        batch_size=cnn.batch_size,
        train_split=train_split,
        callbacks=callbacks,
        iterator_train=ArrayBatches,
        iterator_train__shuffle=True,
        iterator_train__device=device,
        iterator_valid=ArrayBatches,
        iterator_valid__device=device,
        device=device,
        compile_branches=cnn.compile and cuda,
        verbose=int(cnn.verbose > 0),
        **optimizer_params,
    )
