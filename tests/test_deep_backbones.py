"""Backbones of p53radiomics.deep: shapes of all six in both modes, weights from files and ImageNet.

Everything here runs on the CPU with tiny inputs and no training.
"""

import socket
import time

import numpy as np
import pytest
import torch
import torchvision

from p53radiomics.deep import (
    BACKBONES,
    FeatureFusionNet,
    MultiChannelNet,
    SkorchCNNFeaturizer,
    _backbones,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Also imported, with _seed, by the other tests/test_deep_*.py modules.
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


def test_six_backbones_with_penultimate_widths():
    assert dict(BACKBONES) == {
        "resnet18": 512,
        "resnet34": 512,
        "resnet50": 2048,
        "resnet101": 2048,
        "resnet152": 2048,
        "densenet121": 1024,
    }
    with pytest.raises(TypeError):
        BACKBONES["vgg16"] = 4096  # read-only


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("mode", ["mc", "ff"])
def test_output_shapes_all_backbones_both_modes(backbone, mode):
    # Untrained (max_epochs=0), raw features, two 32x32 crops of three phases.
    X = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    cnn = SkorchCNNFeaturizer(backbone, mode, n_components=None, max_epochs=0, device="cpu")
    cnn.fit(X, [0, 1])
    n_branches = 3 if mode == "ff" else 1
    width = BACKBONES[backbone]
    features = cnn.transform(X)
    assert features.shape == (2, n_branches * width)
    assert features.dtype == np.float64 and np.isfinite(features).all()
    assert cnn.get_feature_names_out().shape == (n_branches * width,)
    assert cnn.predict_proba(X).shape == (2, 2)
    module = cnn.net_.module_
    assert isinstance(module, FeatureFusionNet if mode == "ff" else MultiChannelNet)
    assert len(module.branches) == n_branches
    assert len(module.target_layers()) == n_branches


@pytest.mark.parametrize("n_phases", [1, 2, 4])
def test_first_convolution_adapted_to_channel_count(n_phases):
    module = MultiChannelNet("resnet18", n_phases=n_phases)
    assert module.branches[0].conv1.in_channels == n_phases
    assert module(torch.zeros(2, n_phases, 32, 32)).shape == (2, 2)


def _resnet18_state_dict(fill=None):
    model = torchvision.models.resnet18(weights=None)
    if fill is not None:
        with torch.no_grad():
            model.conv1.weight.copy_(fill)
    return model.state_dict()


def test_weights_from_state_dict_file(tmp_path):
    conv = torch.arange(64 * 3 * 7 * 7, dtype=torch.float32).reshape(64, 3, 7, 7) / 1e4
    state = _resnet18_state_dict(conv)
    path = tmp_path / "resnet18.pt"
    torch.save(state, path)
    X = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)

    mc = SkorchCNNFeaturizer(
        mode="mc", weights=str(path), max_epochs=0, n_components=None, device="cpu"
    )
    mc.fit(X, [0, 1])
    trunk = mc.net_.module_.branches[0]
    torch.testing.assert_close(trunk.conv1.weight, conv)
    torch.testing.assert_close(trunk.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])

    # FF branches see one channel: the RGB kernel summed (as for a grey image fed as RGB).
    ff = SkorchCNNFeaturizer(mode="ff", weights=path, max_epochs=0, n_components=None, device="cpu")
    ff.fit(X, [0, 1])
    for branch in ff.net_.module_.branches:
        torch.testing.assert_close(branch.conv1.weight, conv.sum(dim=1, keepdim=True))


def test_state_dict_checkpoint_wrappers_accepted(tmp_path):
    state = _resnet18_state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    loaded = _backbones.load_backbone_state_dict("resnet18", path)
    assert loaded.keys() == state.keys()


def test_state_dict_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    X = np.zeros((2, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match="does not fit backbone 'resnet18'"):
        SkorchCNNFeaturizer(weights=path, max_epochs=0).fit(X, [0, 1])


def test_missing_or_unreadable_weights_file(tmp_path):
    X = np.zeros((2, 3, 32, 32), np.float32)
    with pytest.raises(FileNotFoundError, match="no such file"):
        SkorchCNNFeaturizer(weights=tmp_path / "nope.pt", max_epochs=0).fit(X, [0, 1])
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not be read as a state dict"):
        _backbones.load_backbone_state_dict("resnet18", bad)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        _backbones.load_backbone_state_dict("resnet18", tmp_path / "list.pt")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch cache and no network: every name lookup and connection fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_offline_fails_fast_with_advice(offline):
    X = np.zeros((2, 3, 32, 32), np.float32)
    cnn = SkorchCNNFeaturizer(weights="imagenet", max_epochs=0)
    start = time.perf_counter()
    with pytest.raises(OSError, match="could not be downloaded") as info:
        cnn.fit(X, [0, 1])
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "resnet18" in message and "weights='<path to a state dict>'" in message
    assert str(offline) in message  # where to put the file by hand


def test_imagenet_download_that_hangs_is_abandoned(offline, monkeypatch):
    def hang(self, *args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", hang)
    monkeypatch.setattr(_backbones, "IMAGENET_DOWNLOAD_TIMEOUT", 0.5)
    start = time.perf_counter()
    with pytest.raises(OSError, match="did not finish within 0.5 s"):
        _backbones.load_backbone_state_dict("resnet34", "imagenet")
    assert time.perf_counter() - start < 5


def test_imagenet_weights_from_torch_cache_offline(offline):
    # A file in torchvision's cache under the expected name is used without any network access.
    conv = torch.full((64, 3, 7, 7), 0.01)
    offline.mkdir(parents=True)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    torch.save(_resnet18_state_dict(conv), offline / url.rsplit("/", 1)[-1])
    module = MultiChannelNet("resnet18", n_phases=3, weights="imagenet")
    torch.testing.assert_close(module.branches[0].conv1.weight, conv)
