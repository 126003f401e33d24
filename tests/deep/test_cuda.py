"""SkorchCNNFeaturizer on CUDA: the fast path (the training step replayed from a CUDA graph, FF
branches on concurrent streams, bf16, channels-last) and device-neutral pickling. Skipped without
a GPU.

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
from skorch.callbacks import LRScheduler
from skorch.dataset import Dataset

# Autouse fixtures shared by the deep-learning tests: one torch thread, seeded torch and numpy.
from p53radiomics.deep import CUDAGraphWarning, SkorchCNNFeaturizer
from p53radiomics.deep._modules import FeatureFusionNet
from p53radiomics.deep._net import ArrayBatches, CNNNet, cuda_flags

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def fitted_cuda(toy):
    X, y, _ = toy
    cnn = SkorchCNNFeaturizer(
        mode="ff", n_components=4, max_epochs=4, batch_size=8, augment=True, random_state=0
    )
    return cnn.fit(X, y)  # device="auto"


def test_auto_device_is_cuda_and_network_learns_from_the_graphed_step(fitted_cuda, toy):
    X, y, _ = toy
    assert fitted_cuda.device_ == "cuda"
    assert all(p.is_cuda for p in fitted_cuda.net_.module_.parameters())
    assert roc_auc_score(y == "mutant", fitted_cuda.predict_proba(X)[:, 0]) > 0.9
    history = fitted_cuda.net_.history
    assert all(np.isfinite(history[:, "train_loss"]))
    # 4 epochs of 4 batches of 8: 3 warm-up steps, then the graph for the other 13.
    assert fitted_cuda.net_.graph_replays_ == 4 * 4 - CNNNet.graph_warmup_steps
    assert fitted_cuda.net_.__dict__.get("_step_graph_") is None  # released after the fit


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


def _in_a_cpu_only_process(script):
    """Run `script` in a fresh Python process that sees no GPU; it must exit cleanly."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        timeout=300,
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert done.returncode == 0, done.stderr


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
    _in_a_cpu_only_process(script)
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


def test_a_p53_file_saved_on_cuda_loads_and_predicts_the_same_on_cpu_only(
    fitted_cuda, toy, tmp_path
):
    """save_model on a CUDA machine, load_model in a CPU-only process: the weights travel as
    tensors (safetensors) and the network is rebuilt on the CPU."""
    from p53radiomics import save_model

    X = toy[0]
    save_model(fitted_cuda, tmp_path / "cnn.p53")
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import numpy as np, torch
        from p53radiomics import load_model
        assert not torch.cuda.is_available()
        cnn = load_model({str(tmp_path / "cnn.p53")!r})
        assert cnn.device_ == "cpu" and str(cnn.net_.device) == "cpu", cnn.device_
        assert all(p.device.type == "cpu" for p in cnn.net_.module_.parameters())
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "proba.npy")!r}, cnn.predict_proba(X))
        np.save({str(tmp_path / "features.npy")!r}, cnn.transform(X))
        """
    )
    _in_a_cpu_only_process(script)
    # the same tolerances as the joblib round trip above: float32 rounding between devices
    np.testing.assert_allclose(
        np.load(tmp_path / "proba.npy"), fitted_cuda.predict_proba(X), atol=1e-4
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "features.npy"), fitted_cuda.transform(X), rtol=1e-3, atol=1e-3
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


def test_25d_ff_on_cuda(tiny25):
    X, y = tiny25(n=16)
    cnn = SkorchCNNFeaturizer(
        mode="ff", n_phases=3, n_components=2, max_epochs=1, batch_size=8, random_state=0
    ).fit(X, y)
    assert cnn.device_ == "cuda"
    assert [b.conv1.in_channels for b in cnn.net_.module_.branches] == [3, 3, 3]
    assert cnn.grad_cam(X[:4]).shape == (4, 3, 32, 32)
    loaded = pickle.loads(pickle.dumps(cnn))
    np.testing.assert_allclose(loaded.predict_proba(X), cnn.predict_proba(X), atol=1e-6)


# ----------------------------------------------------------------------------- the CUDA graph


def cuda_net(*, cuda_graph=True, module=FeatureFusionNet, callbacks=(), lr=1e-3, **params):
    """A CNNNet set up as SkorchCNNFeaturizer sets it up on CUDA (fused AdamW, ArrayBatches)."""
    return CNNNet(
        module,
        module__backbone="resnet18",
        module__n_phases=3,
        module__augment=params.pop("augment", False),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        optimizer__fused=True,
        optimizer__weight_decay=1e-4,
        lr=lr,
        max_epochs=params.pop("max_epochs", 1),
        batch_size=8,
        train_split=None,
        callbacks=list(callbacks),
        iterator_train=ArrayBatches,
        iterator_train__shuffle=True,
        iterator_train__device="cuda",
        iterator_valid=ArrayBatches,
        iterator_valid__device="cuda",
        device="cuda",
        verbose=0,
        cuda_graph=cuda_graph,
        **params,
    )


def fit_seeded(net, X, y):
    torch.manual_seed(0)  # the same initial weights (drawn on the CPU) and batch order
    with cuda_flags("cuda", training=True):
        return net.fit(X, y.astype(np.int64))


def test_graphed_step_gives_the_eager_step_loss_within_bf16_tolerance(make_toy):
    X, y, _ = make_toy(40)  # 5 batches of 8: 3 warm-up steps, the captured one, one more
    y = (y == "mutant").astype(np.int64)
    eager = fit_seeded(cuda_net(cuda_graph=False), X, y)
    graphed = fit_seeded(cuda_net(), X, y)
    assert eager.graph_replays_ == 0 and graphed.graph_replays_ == 2
    losses = [[b["train_loss"] for b in net.history[0]["batches"]] for net in (eager, graphed)]
    # Step 4 is the first one replayed from the graph; step 5 follows its first graphed update.
    np.testing.assert_allclose(losses[1], losses[0], rtol=3e-2, atol=1e-2)
    # (Weights are compared through predictions: Adam's first steps move every weight by about
    # the learning rate whatever its gradient, so bf16 noise flips the tiny ones either way.)
    np.testing.assert_allclose(graphed.predict_proba(X), eager.predict_proba(X), atol=5e-2)


class _Freeze(torch.optim.lr_scheduler.LambdaLR):
    """Learning rate 1 (x lr) in the first epoch, 0 from the second; keeps the weights it had
    when it froze them, to compare with the weights at the end."""

    def __init__(self, optimizer, **kwargs):
        super().__init__(optimizer, lr_lambda=lambda epoch: 1.0 if epoch == 0 else 0.0, **kwargs)

    def step(self, *args, **kwargs):
        super().step(*args, **kwargs)
        if self.last_epoch == 1:
            self.frozen = [p.detach().clone() for p in self.optimizer.param_groups[0]["params"]]


def test_graph_follows_the_learning_rate_scheduler(make_toy):
    X, y, _ = make_toy(40)
    y = (y == "mutant").astype(np.int64)
    schedule = LRScheduler(_Freeze)
    net = fit_seeded(cuda_net(callbacks=[("lr", schedule)], max_epochs=2), X, y)
    assert net.graph_replays_ == 2 + 5  # the second epoch is all replays, at learning rate 0
    assert net.history[:, "event_lr"] == [1e-3, 0.0]
    # A graph that kept the learning rate it was captured with would have moved the weights.
    for before, after in zip(schedule.lr_scheduler_.frozen, net.module_.parameters(), strict=True):
        assert torch.equal(before, after)


def test_ragged_last_batch_runs_eagerly_beside_the_graph(make_toy):
    X, y, _ = make_toy(30)  # 8, 8, 8 and a ragged 6 in every epoch
    cnn = SkorchCNNFeaturizer(
        mode="ff", n_components=2, max_epochs=4, batch_size=8, augment=True, random_state=0
    ).fit(X, y)
    history = cnn.net_.history
    assert [b["train_batch_size"] for b in history[-1]["batches"]] == [8, 8, 8, 6]
    assert cnn.net_.graph_replays_ == 4 * 3 - CNNNet.graph_warmup_steps
    assert np.isfinite(history[:, "train_loss"]).all()
    assert roc_auc_score(y == "mutant", cnn.predict_proba(X)[:, 0]) > 0.8


def test_graphed_model_pickles_without_its_graph(fitted_cuda, toy):
    # test_fitted_on_cuda_loads_and_predicts_the_same_on_cpu_only loads this (graphed) model in a
    # CPU-only process.
    assert fitted_cuda.net_.graph_replays_ > 0
    blob = pickle.dumps(fitted_cuda)
    assert b"CUDAGraph" not in blob and b"_step_graph_" not in blob
    X = toy[0]
    np.testing.assert_allclose(pickle.loads(blob).predict_proba(X), fitted_cuda.predict_proba(X))


def _sync(out):
    out.sum().item()  # the host waits for the GPU: found before any capture is tried


def _query(out):
    torch.cuda.current_stream().query()  # not allowed while capturing: CUDA invalidates it


def _raise(out):
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError("an operation that cannot be captured")


class _Uncapturable(FeatureFusionNet):
    failure = None

    def forward(self, x, branches=None):
        out = super().forward(x, branches)
        if self.training:
            type(self).failure(out)
        return out


@pytest.mark.parametrize("failure", [_sync, _query, _raise], ids=["host-sync", "query", "raise"])
def test_step_that_cannot_be_captured_trains_eagerly_after_one_warning(make_toy, failure, recwarn):
    X, y, _ = make_toy(40)
    y = (y == "mutant").astype(np.int64)
    _Uncapturable.failure = staticmethod(failure)
    # With augmentation: eager random numbers must still work after a failed capture.
    net = cuda_net(module=_Uncapturable, augment=True, max_epochs=3)
    fit_seeded(net, X, y)
    caught = [w for w in recwarn if issubclass(w.category, CUDAGraphWarning)]
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "could not be captured as a CUDA graph" in str(caught[0].message)
    assert net.graph_replays_ == 0
    assert [len(epoch["batches"]) for epoch in net.history] == [5, 5, 5]
    assert np.isfinite(net.history[:, "train_loss"]).all()
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    # The process is not left in a bad state: the next net captures its step.
    fine = fit_seeded(cuda_net(augment=True, max_epochs=2), X, y)
    assert fine.graph_replays_ == 2 * 5 - CNNNet.graph_warmup_steps


def test_ff_branches_on_concurrent_streams_give_the_sequential_features(fitted_cuda, toy):
    module = fitted_cuda.net_.module_.eval()
    x = torch.as_tensor(toy[0][:8], device="cuda")
    assert module.concurrent_branches
    with torch.no_grad(), cuda_flags("cuda", training=False):
        concurrent = module.features(x)
        module.concurrent_branches = False
        try:
            sequential = module.features(x)
        finally:
            module.concurrent_branches = True
    for a, b in zip(concurrent, sequential, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compiled_branches_train_inside_the_graph(make_toy):
    X, y, _ = make_toy(40)
    y = (y == "mutant").astype(np.int64)
    net = fit_seeded(cuda_net(compile_branches=True, max_epochs=2), X, y)
    assert net.graph_replays_ == 2 * 5 - CNNNet.graph_warmup_steps
    assert np.isfinite(net.history[:, "train_loss"]).all()
    assert not isinstance(net.module_, torch._dynamo.eval_frame.OptimizedModule)
    assert b"OptimizedModule" not in pickle.dumps(net)
