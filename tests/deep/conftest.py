"""What the tests of p53radiomics.deep share: one torch thread and a seed for every test, the toy
crops their CNNs learn from, tiny crops and a featurizer that fits on them in about a second."""

import numpy as np
import pytest
import torch

from p53radiomics.deep import SkorchCNNFeaturizer

TOY_SIZE = 64  # the side of make_toy's crops
HALF = TOY_SIZE // 2


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # On a shared 2-core machine, two OpenMP threads that spin while waiting for each other run
    # these small convolutions 3-10 times slower than one thread does.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - the legacy global state, which libraries may draw from


def _make_toy(n, seed=0, side=14):
    """Crops (n, 3, 64, 64), labels, the quadrant of each square (0..3, -1 without square)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3, TOY_SIZE, TOY_SIZE)).astype(np.float32)
    y = np.where(np.arange(n) % 2 == 0, "mutant", "wild")
    quadrant = np.full(n, -1)
    for i in np.flatnonzero(y == "mutant"):
        quadrant[i] = rng.integers(0, 4)
        r0 = (quadrant[i] // 2) * HALF + (HALF - side) // 2 + rng.integers(-2, 3)
        c0 = (quadrant[i] % 2) * HALF + (HALF - side) // 2 + rng.integers(-2, 3)
        X[i, :, r0 : r0 + side, c0 : c0 + side] += np.array([4.0, 3.0, 2.0])[:, None, None]
    return X, y, quadrant


def _tiny25(n=8, seed=0, size=32):
    """2.5D crops: three phases of three slices each, phase after phase (nine channels)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 9, size, size)).astype(np.float32)
    X += np.arange(9, dtype=np.float32)[:, None, None]  # every channel its own level
    return X, np.arange(n) % 2


def _tiny(n=8, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, size, size)).astype(np.float32), np.arange(n) % 2


def _quick(**params):
    """A featurizer that fits in about a second on tiny crops."""
    defaults = {"mode": "mc", "n_components": 2, "max_epochs": 1, "batch_size": 8}
    return SkorchCNNFeaturizer(**{**defaults, **params, "device": "cpu", "random_state": 0})


@pytest.fixture(scope="session")
def make_toy():
    """``make_toy(n, seed=0, side=14)``: crops (n, 3, 64, 64) where the "mutant" half holds a bright
    square in one quadrant; returns the crops, the labels and each square's quadrant."""
    return _make_toy


@pytest.fixture(scope="session")
def tiny25():
    """``tiny25(n=8, seed=0, size=32)``: 2.5D crops, three phases of three slices each."""
    return _tiny25


@pytest.fixture(scope="module")
def toy(make_toy):
    """``make_toy(32)``, once per test module."""
    return make_toy(32)


@pytest.fixture(scope="session")
def tiny():
    """``tiny(n=8, seed=0, size=32)``: noise crops (n, 3, size, size) and labels 0, 1, 0, 1, ..."""
    return _tiny


@pytest.fixture(scope="session")
def quick():
    """``quick(**params)``: a SkorchCNNFeaturizer that fits in about a second on tiny crops (MC, 2
    components, 1 epoch, batches of 8, unless `params` say otherwise; always on the CPU, with
    random_state=0)."""
    return _quick
