"""SkorchCNNFeaturizer: the study's CNN model (MC or FF fusion) as a scikit-learn estimator."""

import logging
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils._sklearn import Interval, StrOptions, _fit_context
from ._backbones import BACKBONES
from ._crops import (
    MIN_SIDE,
    check_crops,
    check_weights,
    phase_names,
    split_phases,
    validated_crops,
)
from ._device import cuda_flags, resolve_device, seeded
from ._gradcam import grad_cam
from ._net import featurizer_net
from ._pca import check_n_components, fit_branch_pcas, project

__all__ = ["SkorchCNNFeaturizer"]

logger = logging.getLogger(__name__)


class SkorchCNNFeaturizer(ClassifierMixin, TransformerMixin, BaseEstimator):
    """CNN on multi-phase crops: a classifier, and a transformer into penultimate features.

    The study's deep-learning model. A torchvision backbone is trained end to end through skorch on
    the crops of the phases, in one of two fusion modes:

    - ``"mc"`` (multi-channel, early fusion): the phases stacked as the channels of one CNN;
    - ``"ff"`` (feature fusion): one CNN per phase, their penultimate features concatenated, one
      linear head on the concatenation.

    Crops have one channel per phase (the study's 2D input), or, with ``n_phases``, several:
    2.5D crops hold the ``2k + 1`` slices around each phase's largest slice, phase after phase, and
    each FF branch then takes its phase's slices as channels.

    ``transform`` returns the penultimate features of each branch (in evaluation mode, without
    gradients), compressed by a PCA per branch fitted on the training crops (the study kept 8 per
    phase: 24 in all); ``predict`` and ``predict_proba`` come from the network's own head.

    Crops are z-scored per channel with statistics of the training crops (inside the network, so
    they travel with it); during training only, they are augmented by a random crop (resized back)
    and random horizontal and vertical flips; then they are resized to the side the backbone needs
    (see ``input_size``). On CUDA, training runs under bf16 autocast (where the GPU supports it)
    in channels-last memory format, with the training crops uploaded once from pinned memory
    without blocking, FF's branches on one CUDA stream each, and the whole training step
    (forward, loss, backward, fused AdamW step) captured once as a CUDA graph and replayed for
    every batch of ``batch_size`` crops (a ragged last batch runs eagerly; a step that cannot be
    captured falls back to the eager step with one ``CUDAGraphWarning``); inference runs in
    float32, so that a featurizer fitted on CUDA, pickled and loaded on a CPU-only machine,
    predicts the same.

    Parameters
    ----------
    backbone : str, default="resnet18"
        torchvision classification network: the study's ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"``, ``"resnet101"``, ``"resnet152"``, ``"densenet121"``, or any other key of
        :data:`~p53radiomics.deep.BACKBONES`, e.g. ``"efficientnet_v2_s"``, ``"convnext_tiny"``,
        ``"swin_t"``, ``"vit_b_16"``. ``BACKBONES`` gives each one's penultimate width (512, 512,
        2048, 2048, 2048, 1024 for the study's six; 1280, 768, 768, 768 for those four).
    mode : {"ff", "mc"}, default="ff"
        Fusion mode, as above.
    weights : None, "imagenet" or path, default=None
        Initial backbone weights: ``None`` random; ``"imagenet"`` torchvision's default ImageNet
        weights (from torch's cache, else downloaded; without internet access an ``OSError``
        within seconds says what to do); or the path of a state dict of the torchvision model. The
        first convolution (the patch embedding of ViT and Swin) is adapted to the input channels
        (the RGB kernel averaged and spread over them: summed for one channel).
    n_components : int or None, default=8
        PCA components kept per branch in ``transform``; ``None`` keeps the raw penultimate
        features.
    max_epochs : int, default=20
        Training epochs (0 keeps the initial weights: pretrained features without fine-tuning).
    batch_size : int, default=32
        Mini-batch size for training and inference.
    lr : float, default=1e-3
        Learning rate of AdamW.
    weight_decay : float, default=1e-4
        Weight decay of AdamW.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        Cosine annealing of the learning rate over ``max_epochs`` (skorch ``LRScheduler``), or
        none.
    validation_fraction : float or None, default=None
        Share of the training crops held out (stratified) for early stopping on the validation
        loss, restoring the best epoch's weights (skorch ``EarlyStopping``). ``None`` trains on
        all crops for ``max_epochs``.
    patience : int, default=5
        Epochs without improvement of the validation loss before stopping.
    augment : bool, default=True
        Random crop and flips during training.
    crop_scale : float, default=0.875
        Smallest side of the random crop, as a fraction of the crop side.
    phases : sequence of str or None, default=None
        Names of the phases, used in feature names; ``None`` means ``("ap", "pvp", "dp")`` for
        three phases, else ``phase0``, ``phase1``...
    n_phases : int or None, default=None
        Number of phases in ``X``; ``None``: each channel is one phase. For 2.5D crops of shape
        ``(n_samples, n_phases * (2k + 1), height, width)``, phase-major (phase 0's ``2k + 1``
        slices from lowest to highest, then phase 1's...), as :class:`LargestSliceCropper` makes
        them with ``context_slices=k``: FF gives the branch of each phase its ``2k + 1``
        channels; MC feeds all channels into one backbone. The number of channels must be a
        multiple of ``n_phases``.
    input_size : int or None, default=None
        Side, in pixels, that the crops are resized to (bilinearly, inside the network, so crops
        of any size work) before the backbone. ``None``: the backbone's own need. ViT and MaxViT
        are built for one size, that of their ImageNet weights (224 pixels; 518 for
        ``vit_h_14``), and every crop is resized to it; the other backbones take the crops as
        they are, enlarged only where smaller than the network takes (75 pixels for Inception
        V3, 63 for AlexNet, 33 for EfficientNet V2; Swin pads its windows and takes any size).
        An integer resizes every crop to that side, e.g. 224 to match ImageNet weights on small
        crops; ViT is then built for it (a multiple of its patch size; ImageNet position
        embeddings are interpolated to it) and MaxViT needs a multiple of 224.
    compile : bool, default=False
        On CUDA, train with the backbones compiled by :func:`torch.compile` (inside the CUDA
        graph): the first batches then pay for the compilation (tens of seconds per backbone),
        which pays back on long fits of backbones with many small kernels (DenseNet's
        concatenations). The compiled code shares the network's parameters: the fitted network,
        its pickle and inference are those of an uncompiled one. Ignored on the CPU, whose path
        stays eager and reproducible.
    device : str, default="auto"
        Torch device; ``"auto"`` is CUDA when available, else the CPU.
    verbose : int, default=0
        0 silent; 1 prints skorch's table of epochs; 2 adds a progress bar over batches.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch order, augmentation, the validation split and the PCA,
        without changing torch's global random state. A fit on the CPU is then reproducible (on
        CUDA, cuDNN autotuning is not deterministic).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of channels (the second dimension of ``X``).
    n_phases_ : int
        Number of phases: ``n_phases``, or ``n_features_in_`` when it is ``None``.
    channels_per_phase_ : int
        Channels of each phase: ``2k + 1`` for 2.5D crops, 1 for 2D ones.
    phases_ : tuple of str
        Phase names used in feature names.
    channel_mean_, channel_std_ : ndarray of shape (n_features_in_,)
        Per-channel z-score statistics of the training crops.
    device_ : str
        Device the network lives on.
    net_ : skorch.NeuralNetClassifier
        The fitted skorch network (its ``history`` holds losses and durations per epoch;
        ``net_.module_`` is a :class:`~p53radiomics.deep.FeatureFusionNet` or
        :class:`~p53radiomics.deep.MultiChannelNet`; ``net_.eval_batches(X)`` yields the
        batches of ``X`` on its device with the network in evaluation mode, and
        ``net_.penultimate(X)`` the concatenated penultimate features of the branches).
    branch_width_ : int
        Penultimate features per branch.
    pca_ : list of sklearn.decomposition.PCA or None
        One PCA per branch (one per phase in FF, one in MC); ``None`` when ``n_components`` is
        ``None``.

    See Also
    --------
    p53radiomics.deep.grad_cam : Grad-CAM heatmaps of a fitted featurizer.
    LargestSliceCropper : Makes the crops this estimator takes from a cohort table.

    Notes
    -----
    The input is a 4-D array, so scikit-learn's common estimator checks, which build 2-D arrays,
    do not apply; ``tests/deep/test_featurizer.py`` runs the checks that need no data and the
    equivalent ones on crops.

    Examples
    --------
    >>> import numpy as np
    >>> from p53radiomics.deep import SkorchCNNFeaturizer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(8, 3, 32, 32)).astype(np.float32)
    >>> y = np.array([0, 1] * 4)
    >>> cnn = SkorchCNNFeaturizer(n_components=2, max_epochs=1, batch_size=4, random_state=0)
    >>> cnn.fit_transform(X, y).shape
    (8, 6)
    >>> cnn.get_feature_names_out()[:3]
    array(['cnn_ap_pc0', 'cnn_ap_pc1', 'cnn_pvp_pc0'], dtype=object)
    >>> cnn.predict_proba(X).shape
    (8, 2)
    >>> cnn.grad_cam(X[:2]).shape
    (2, 3, 32, 32)

    2.5D crops: three phases of three slices each, one FF branch per phase.

    >>> X3 = rng.normal(size=(8, 9, 32, 32)).astype(np.float32)
    >>> cnn3 = SkorchCNNFeaturizer(
    ...     n_components=2, n_phases=3, max_epochs=1, batch_size=4, random_state=0)
    >>> cnn3.fit_transform(X3, y).shape
    (8, 6)
    >>> cnn3.grad_cam(X3[:2]).shape
    (2, 3, 32, 32)
    """

    _parameter_constraints: dict = {
        "backbone": [StrOptions(set(BACKBONES))],
        "mode": [StrOptions({"ff", "mc"})],
        "weights": [None, str, os.PathLike],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "augment": ["boolean"],
        "crop_scale": [Interval(Real, 0, 1, closed="right")],
        "phases": [list, tuple, None],
        "n_phases": [Interval(Integral, 1, None, closed="left"), None],
        "input_size": [Interval(Integral, MIN_SIDE, None, closed="left"), None],
        "compile": ["boolean"],
        "device": [str, torch.device],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        backbone="resnet18",
        mode="ff",
        weights=None,
        n_components=8,
        *,
        max_epochs=20,
        batch_size=32,
        lr=1e-3,
        weight_decay=1e-4,
        lr_schedule="cosine",
        validation_fraction=None,
        patience=5,
        augment=True,
        crop_scale=0.875,
        phases=None,
        n_phases=None,
        input_size=None,
        compile=False,
        device="auto",
        verbose=0,
        random_state=None,
    ):
        self.backbone = backbone
        self.mode = mode
        self.weights = weights
        self.n_components = n_components
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.crop_scale = crop_scale
        self.phases = phases
        self.n_phases = n_phases
        self.input_size = input_size
        self.compile = compile
        self.device = device
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def _fit(self, X, y):
        """Validate, train the network and fit the PCA; return the training features."""
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32, ensure_min_samples=2)
        check_crops(X, self.backbone, self.input_size)
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y holds a single class ({self.classes_[0]!r}); the CNN needs at least two."
            )
        check_weights(self.weights)
        self.n_phases_, self.channels_per_phase_ = split_phases(X.shape[1], self.n_phases)
        self.phases_ = phase_names(
            self.phases, self.n_phases_, n_phases_given=self.n_phases is not None
        )
        self.device_ = resolve_device(self.device)
        self.channel_mean_ = X.mean(axis=(0, 2, 3), dtype=np.float64)
        std = X.std(axis=(0, 2, 3), dtype=np.float64)
        self.channel_std_ = np.where(std > 0, std, 1.0)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        logger.info(
            "Training %s-%s on %d crops of %s on %s.",
            self.mode.upper(),
            self.backbone,
            len(X),
            X.shape[1:],
            self.device_,
        )
        net = featurizer_net(self, len(self.classes_), seed, self.device_)
        with seeded(seed, self.device_), cuda_flags(self.device_, training=True):
            net.fit(X, y_encoded.astype(np.int64))
        net.optimizer_.zero_grad(set_to_none=True)  # free the last step's gradients
        self.net_ = net
        self.branch_width_ = net.module_.branch_width
        features = None
        self.pca_ = None
        if self.n_components is not None:
            check_n_components(self.n_components, len(X), self.branch_width_)
            features = net.penultimate(X)
            self.pca_ = fit_branch_pcas(features, self.branch_width_, self.n_components, seed)
        return X, features

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the network on crops ``X`` and labels ``y``, then fit the PCA per branch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops, e.g. from :class:`LargestSliceCropper`; converted to float32.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self : SkorchCNNFeaturizer
            Fitted estimator.
        """
        self._fit(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit, then return the features of ``X``, reusing the pass that fitted the PCA.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops.
        y : array-like of shape (n_samples,)
            Class labels (required).

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out)
            As :meth:`transform` would return.
        """
        X, features = self._fit(X, y)
        if features is None:
            features = self.net_.penultimate(X)
        return project(features, self.pca_, self.branch_width_)

    # ------------------------------------------------------------------ fitted use

    def transform(self, X):
        """Penultimate features of each branch, PCA-compressed per branch when fitted so.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out), dtype float64
            Branch after branch; ``n_features_out`` is ``n_branches * n_components`` (or
            ``n_branches * branch_width_`` when ``n_components=None``).
        """
        X = validated_crops(self, X)
        return project(self.net_.penultimate(X), self.pca_, self.branch_width_)

    def predict_proba(self, X):
        """Class probabilities from the network's head (softmax of its logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        X = validated_crops(self, X)
        return self.net_.predict_proba(X).astype(np.float64)

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def grad_cam(self, X, *, target=None):
        """Grad-CAM heatmaps at crop resolution: one per phase (FF) or the joint one (MC).

        See :func:`p53radiomics.deep.grad_cam`, which this calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_channels, height, width)
            Crops.
        target : class label, default=None
            Class explained; ``None`` explains each sample's predicted class.

        Returns
        -------
        heatmaps : ndarray of shape (n_samples, n_maps, height, width)
            In ``[0, 1]``; ``n_maps`` is ``n_phases`` (FF) or 1 (MC).
        """
        return grad_cam(self, X, target=target)

    def get_feature_names_out(self, input_features=None):
        """Names of the features that :meth:`transform` returns.

        ``cnn_<branch>_pc<j>`` with PCA, ``cnn_<branch>_<j>`` without, where the branch is a phase
        name in FF and ``mc`` in MC.

        Parameters
        ----------
        input_features : None
            Unused (the input is an image array); accepted for the scikit-learn API.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output feature.
        """
        check_is_fitted(self)
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features should have {self.n_features_in_} entries (one per channel), got "
                f"{len(input_features)}."
            )
        branches = self.phases_ if self.mode == "ff" else ("mc",)
        if self.pca_ is None:
            per_branch = [str(j) for j in range(self.branch_width_)]
        else:
            per_branch = [f"pc{j}" for j in range(self.n_components)]
        names = [f"cnn_{b}_{s}" for b in branches for s in per_branch]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Crops are 4-D arrays: scikit-learn's 2-D checks do not apply.
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def __setstate__(self, state):
        # Featurizers pickled before 2.5D crops, resizing and compile: one channel per phase, no
        # resizing, no compilation.
        state.setdefault("n_phases", None)
        state.setdefault("input_size", None)
        state.setdefault("compile", False)
        if "phases_" in state and "n_phases_" not in state:
            state["n_phases_"], state["channels_per_phase_"] = len(state["phases_"]), 1
        super().__setstate__(state)
        net = self.__dict__.get("net_")
        if net is not None:
            self.device_ = str(net.device)
