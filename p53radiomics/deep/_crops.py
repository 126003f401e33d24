"""Checks of the crops, phases and weights that :class:`SkorchCNNFeaturizer` takes."""

import os

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from .._settings import DEFAULT_PHASES
from ._backbones import input_rule

__all__ = [
    "MIN_SIDE",
    "STUDY_PHASES",
    "check_crops",
    "check_weights",
    "phase_names",
    "split_phases",
    "validated_crops",
]

MIN_SIDE = 32  # the backbones downsample by 32; smaller crops leave them nothing to pool
STUDY_PHASES = DEFAULT_PHASES


def check_crops(X, backbone, input_size):
    """Refuse ``X`` unless it is 4-D, with crops large enough for ``backbone`` (or resized)."""
    if X.ndim != 4:
        raise ValueError(
            "Expected crops of shape (n_samples, n_channels, height, width), got an array of "
            f"shape {X.shape}."
        )
    _, resized = input_rule(backbone, input_size)
    if not resized and min(X.shape[2:]) < MIN_SIDE:
        raise ValueError(
            f"Crops of {X.shape[2]}x{X.shape[3]} pixels are too small for the backbones, "
            f"which downsample by 32: use at least {MIN_SIDE}x{MIN_SIDE}, or an input_size "
            "that the network resizes them to."
        )


def validated_crops(estimator, X):
    """``X`` as a fitted featurizer takes it: checked fitted, same channels as in ``fit``,
    float32, crops its backbone can take."""
    check_is_fitted(estimator)
    X = validate_data(estimator, X, reset=False, allow_nd=True, dtype=np.float32)
    check_crops(X, estimator.backbone, estimator.input_size)
    return X


def split_phases(n_channels, n_phases):
    """``(n_phases, channels_per_phase)`` of crops with ``n_channels`` channels; ``n_phases``
    ``None`` means one channel per phase."""
    n_phases = n_channels if n_phases is None else n_phases
    if n_channels % n_phases:
        raise ValueError(
            f"X has {n_channels} channels, which n_phases={n_phases} does not divide: 2.5D "
            "crops hold the same number of slices (2k + 1) for every phase, phase after phase."
        )
    return n_phases, n_channels // n_phases


def phase_names(phases, n_phases, *, n_phases_given):
    """The names of ``n_phases`` phases: ``phases`` checked, or the defaults when ``None``.

    ``n_phases_given`` says whether the user passed ``n_phases`` (the error then needs no hint
    about 2.5D crops).
    """
    if phases is None:
        if n_phases == len(STUDY_PHASES):
            return STUDY_PHASES
        return tuple(f"phase{i}" for i in range(n_phases))
    names = tuple(phases)
    if len(names) != n_phases or len(set(names)) != n_phases:
        hint = "" if n_phases_given else " (pass n_phases for 2.5D crops)"
        raise ValueError(
            f"phases={phases!r} must name each of the {n_phases} phases of X once{hint}."
        )
    return names


def check_weights(weights):
    """Refuse ``weights`` that are neither ``None``, ``"imagenet"`` nor an existing file."""
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return
    if not os.path.isfile(os.fspath(weights)):
        raise FileNotFoundError(
            f"weights={weights!r}: no such file. Expected None, 'imagenet', or the path of a "
            "state dict."
        )
