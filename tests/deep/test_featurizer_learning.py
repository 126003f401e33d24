"""SkorchCNNFeaturizer fitted on a toy task, on the CPU: it learns (MC and FF modes), its Grad-CAM
maps find what it learnt, its transform gives a PCA per branch with feature names, and a fitted
model pickles and loads (also with joblib, in a fresh CPU-only process).

The toy task: noise crops; in class "mutant" a bright square sits near the centre of a random
quadrant on every phase. 64x64 crops give ResNet18's last stage a 2x2 grid, one cell per quadrant,
so Grad-CAM can be checked against the square's quadrant. The two fitted models are module-scoped
fixtures, fitted once for all the tests here.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from p53radiomics.deep import SkorchCNNFeaturizer

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("deep.test_featurizer_learning")

CLASSES = np.array(["mutant", "wild"])  # sorted, so "mutant" is classes_[0]
SIZE = 64  # the side of make_toy's crops (tests/deep/conftest.py)
HALF = SIZE // 2


@pytest.fixture(scope="module")
def fitted_mc(toy):
    X, y, _ = toy
    cnn = SkorchCNNFeaturizer(
        mode="mc",
        n_components=4,
        max_epochs=3,
        batch_size=16,
        augment=False,
        random_state=0,
        device="cpu",
    )
    torch.manual_seed(0)
    return cnn.fit(X, y)


@pytest.fixture(scope="module")
def fitted_ff(make_toy):
    X, y, quadrant = make_toy(24, seed=1)
    cnn = SkorchCNNFeaturizer(
        mode="ff",
        n_components=4,
        max_epochs=2,
        batch_size=16,
        augment=False,
        random_state=0,
        device="cpu",
    )
    return cnn.fit(X, y), X, y, quadrant


def quadrant_of_peak(heatmap):
    means = [heatmap[r : r + HALF, c : c + HALF].mean() for r in (0, HALF) for c in (0, HALF)]
    return int(np.argmax(means))


# ----------------------------------------------------------------------------- learning


def test_mc_learns_toy_task(fitted_mc, toy):
    X, y, _ = toy
    proba = fitted_mc.predict_proba(X)
    assert proba.shape == (32, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fitted_mc.classes_, CLASSES)
    assert roc_auc_score(y == "mutant", proba[:, 0]) > 0.9
    assert set(fitted_mc.predict(X)) <= set(CLASSES)
    assert fitted_mc.score(X, y) > 0.8


def test_ff_learns_toy_task(fitted_ff):
    cnn, X, y, _ = fitted_ff
    assert roc_auc_score(y == "mutant", cnn.predict_proba(X)[:, 0]) > 0.9
    assert len(cnn.net_.module_.branches) == 3
    assert cnn.transform(X).shape == (24, 12)


# ----------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_mc_joint_map_finds_the_square(fitted_mc, toy):
    X, y, quadrant = toy
    positive = np.flatnonzero(y == "mutant")
    maps = fitted_mc.grad_cam(X[positive], target="mutant")
    assert maps.shape == (len(positive), 1, SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2, 3)), 1)
    hits = [quadrant_of_peak(m[0]) == q for m, q in zip(maps, quadrant[positive], strict=True)]
    assert np.mean(hits) >= 0.75  # chance: 0.25


def test_grad_cam_ff_per_phase_maps_find_the_square(fitted_ff):
    cnn, X, y, quadrant = fitted_ff
    positive = np.flatnonzero(y == "mutant")
    maps = cnn.grad_cam(X[positive], target="mutant")
    assert maps.shape == (len(positive), 3, SIZE, SIZE)
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2, 3)), 1)  # one scale per sample
    hits = []
    for m, q in zip(maps, quadrant[positive], strict=True):
        strongest = m[np.argmax(m.mean(axis=(1, 2)))]  # the phase that drives the decision
        hits.append(quadrant_of_peak(strongest) == q)
    assert np.mean(hits) >= 0.75


def test_grad_cam_targets(fitted_mc, toy):
    X = toy[0][:3]
    predicted = fitted_mc.grad_cam(X)
    by_label = [
        fitted_mc.grad_cam(X[i : i + 1], target=label)
        for i, label in enumerate(fitted_mc.predict(X))
    ]
    np.testing.assert_allclose(predicted, np.concatenate(by_label), atol=1e-5)
    with pytest.raises(ValueError, match="is not one of the classes"):
        fitted_mc.grad_cam(X, target="unknown")
    # Grad-CAM leaves no gradient behind on the parameters.
    assert all(p.grad is None for p in fitted_mc.net_.module_.parameters())


# ----------------------------------------------------------------------------- transform


def test_transform_pca_per_branch_and_feature_names(fitted_mc, fitted_ff, toy):
    features = fitted_mc.transform(toy[0])
    assert features.shape == (32, 4) and features.dtype == np.float64
    np.testing.assert_array_equal(
        fitted_mc.get_feature_names_out(), ["cnn_mc_pc0", "cnn_mc_pc1", "cnn_mc_pc2", "cnn_mc_pc3"]
    )
    names = fitted_ff[0].get_feature_names_out()
    assert names[0] == "cnn_ap_pc0" and names[4] == "cnn_pvp_pc0" and names[-1] == "cnn_dp_pc3"
    assert [type(p).__name__ for p in fitted_ff[0].pca_] == ["PCA"] * 3


# ----------------------------------------------------------------------------- pickling


def test_pickle_round_trip_transforms_identically(fitted_mc, toy):
    X = toy[0]
    loaded = pickle.loads(pickle.dumps(fitted_mc))
    # The network gives bit-identical features; the PCA's BLAS may move the last float64 digit.
    np.testing.assert_array_equal(loaded.net_.penultimate(X), fitted_mc.net_.penultimate(X))
    np.testing.assert_allclose(loaded.transform(X), fitted_mc.transform(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted_mc.predict_proba(X))
    assert loaded.device_ == "cpu"


def test_joblib_load_in_fresh_cpu_only_process(fitted_mc, toy, tmp_path):
    X = toy[0][:6]
    joblib.dump(fitted_mc, tmp_path / "cnn.joblib")
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("error")  # no device warning either
        # third-party imports (skorch imports torch_geometric where present) may deprecate things
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import joblib, numpy as np
        cnn = joblib.load({str(tmp_path / "cnn.joblib")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "proba.npy")!r}, cnn.predict_proba(X))
        np.save({str(tmp_path / "features.npy")!r}, cnn.transform(X))
        """
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    np.testing.assert_allclose(
        np.load(tmp_path / "proba.npy"), fitted_mc.predict_proba(X), atol=1e-6
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "features.npy"), fitted_mc.transform(X), atol=1e-5
    )
