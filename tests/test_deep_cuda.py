"""SkorchCNNFeaturizer on CUDA: the fast path and device-neutral pickling. Skipped without a GPU.

``benchmarks/gpu_check.sh`` runs this file on a GPU machine, with ``benchmarks/bench_cnn.py``.
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
from skorch.dataset import Dataset

# Autouse fixtures shared by the deep-learning tests: one torch thread, seeded torch and numpy.
from test_deep_backbones import _one_torch_thread, _seed  # noqa: F401
from test_deep_featurizer import make_toy, tiny25

from p53radiomics.deep import SkorchCNNFeaturizer
from p53radiomics.deep._net import ArrayBatches

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def toy():
    return make_toy(32)


@pytest.fixture(scope="module")
def fitted_cuda(toy):
    X, y, _ = toy
    cnn = SkorchCNNFeaturizer(
        mode="ff", n_components=4, max_epochs=4, batch_size=8, augment=True, random_state=0
    )
    return cnn.fit(X, y)  # device="auto"


def test_auto_device_is_cuda_and_network_learns(fitted_cuda, toy):
    X, y, _ = toy
    assert fitted_cuda.device_ == "cuda"
    assert all(p.is_cuda for p in fitted_cuda.net_.module_.parameters())
    assert roc_auc_score(y == "mutant", fitted_cuda.predict_proba(X)[:, 0]) > 0.9
    history = fitted_cuda.net_.history
    assert all(np.isfinite(history[:, "train_loss"]))


def test_channels_last_and_bf16_autocast_while_training_only(fitted_cuda, toy):
    net = fitted_cuda.net_
    module = net.module_
    conv = module.branches[0].conv1
    assert module.channels_last
    assert (
        module.branches[0].layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    )
    dtypes = []
    handle = conv.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    x = torch.as_tensor(toy[0][:4])
    try:
        module.train()
        with torch.no_grad():
            assert net.infer(x).dtype == torch.float32  # logits returned in float32
        module.eval()
        with torch.no_grad():
            net.infer(x)
    finally:
        handle.remove()
        module.eval()
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert dtypes == [expected, torch.float32]


def test_training_crops_uploaded_once_and_batched_on_gpu(toy):
    X, y, _ = toy
    batches = ArrayBatches(Dataset(X, np.arange(len(X))), batch_size=8, shuffle=True, device="cuda")
    seen = []
    for xb, yb in batches:
        assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.float32
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(len(X)))
    assert batches._on_device[0].is_cuda  # the whole array went up once


def test_optimizer_is_fused_adamw(fitted_cuda):
    optimizer = fitted_cuda.net_.optimizer_
    assert type(optimizer).__name__ == "AdamW" and optimizer.defaults.get("fused")


def test_grad_cam_on_cuda(fitted_cuda, toy):
    maps = fitted_cuda.grad_cam(toy[0][:5])
    assert maps.shape == (5, 3, 64, 64) and maps.dtype == np.float32
    assert 0 <= maps.min() and maps.max() <= 1


def test_pickle_on_cuda_machine_stays_on_cuda(fitted_cuda, toy):
    X = toy[0]
    loaded = pickle.loads(pickle.dumps(fitted_cuda))
    assert loaded.device_ == "cuda"
    np.testing.assert_allclose(loaded.predict_proba(X), fitted_cuda.predict_proba(X), atol=1e-6)


def test_fitted_on_cuda_loads_and_predicts_the_same_on_cpu_only(fitted_cuda, toy, tmp_path):
    X = toy[0]
    joblib.dump(fitted_cuda, tmp_path / "cnn.joblib")
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("error")  # no device warning either
        # third-party imports (skorch imports torch_geometric where present) may deprecate things
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import joblib, numpy as np, torch
        assert not torch.cuda.is_available()
        cnn = joblib.load({str(tmp_path / "cnn.joblib")!r})
        assert cnn.device_ == "cpu" and cnn.net_.device == "cpu", cnn.device_
        assert all(p.device.type == "cpu" for p in cnn.net_.module_.parameters())
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "proba.npy")!r}, cnn.predict_proba(X))
        np.save({str(tmp_path / "features.npy")!r}, cnn.transform(X))
        np.save({str(tmp_path / "cam.npy")!r}, cnn.grad_cam(X[:4]))
        """
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, timeout=300, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # CUDA inference runs in float32 without TF32, so CPU and GPU agree to float32 rounding.
    np.testing.assert_allclose(
        np.load(tmp_path / "proba.npy"), fitted_cuda.predict_proba(X), atol=1e-4
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "features.npy"), fitted_cuda.transform(X), rtol=1e-3, atol=1e-3
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "cam.npy"), fitted_cuda.grad_cam(X[:4]), atol=1e-2
    )


@pytest.mark.parametrize(
    ("backbone", "mode"), [("convnext_tiny", "mc"), ("swin_t", "ff"), ("vit_b_16", "mc")]
)
def test_newer_backbones_train_and_explain_on_cuda(backbone, mode, toy):
    # The fast path (bf16 autocast, channels-last) with a ConvNeXt, a Swin and a ViT (crops
    # resized to 224 pixels inside the network); Grad-CAM at crop resolution.
    X, y, _ = toy
    cnn = SkorchCNNFeaturizer(
        backbone, mode, n_components=2, max_epochs=1, batch_size=16, random_state=0
    ).fit(X, y)
    assert cnn.device_ == "cuda" and cnn.net_.module_.channels_last
    assert np.isfinite(cnn.net_.history[:, "train_loss"]).all()
    n_maps = 3 if mode == "ff" else 1
    assert cnn.transform(X).shape == (len(X), 2 * n_maps)
    maps = cnn.grad_cam(X[:4])
    assert maps.shape == (4, n_maps, 64, 64) and np.isfinite(maps).all()
    assert 0 <= maps.min() and maps.max() <= 1


def test_25d_ff_on_cuda():
    X, y = tiny25(n=16)
    cnn = SkorchCNNFeaturizer(
        mode="ff", n_phases=3, n_components=2, max_epochs=1, batch_size=8, random_state=0
    ).fit(X, y)
    assert cnn.device_ == "cuda"
    assert [b.conv1.in_channels for b in cnn.net_.module_.branches] == [3, 3, 3]
    assert cnn.grad_cam(X[:4]).shape == (4, 3, 32, 32)
    loaded = pickle.loads(pickle.dumps(cnn))
    np.testing.assert_allclose(loaded.predict_proba(X), cnn.predict_proba(X), atol=1e-6)
