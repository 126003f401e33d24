"""The PCA per branch that compresses :class:`SkorchCNNFeaturizer`'s penultimate features."""

import numpy as np
from sklearn.decomposition import PCA

__all__ = ["check_n_components", "fit_branch_pcas", "project"]


def _blocks(features, width):
    """The features of each branch: consecutive blocks of ``width`` columns."""
    return [features[:, i : i + width] for i in range(0, features.shape[1], width)]


def check_n_components(n_components, n_samples, width):
    """Refuse more components than ``min(n_samples, width)``."""
    limit = min(n_samples, width)
    if n_components > limit:
        raise ValueError(
            f"n_components={n_components} exceeds min(n_samples, branch width) = "
            f"{limit}; lower it or pass n_components=None for raw features."
        )


def fit_branch_pcas(features, width, n_components, seed):
    """One :class:`~sklearn.decomposition.PCA` per branch of ``width`` features, in float64."""
    return [
        PCA(n_components=n_components, random_state=seed).fit(block)
        for block in _blocks(features.astype(np.float64), width)
    ]


def project(features, pcas, width):
    """``features`` (float64) projected branch by branch; as they are when ``pcas`` is None."""
    # float64 throughout: float32 BLAS results shift in the last digit with the memory
    # alignment of the arrays (e.g. after unpickling).
    features = features.astype(np.float64)
    if pcas is None:
        return features
    blocks = [pca.transform(b) for pca, b in zip(pcas, _blocks(features, width), strict=True)]
    return np.hstack(blocks)
