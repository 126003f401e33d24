"""Backbones of p53radiomics.deep: the registry, shapes of the study's six and of newer families
(EfficientNet V2, ConvNeXt, Swin, ViT) in both modes, input sizes, Grad-CAM layers, weights from
files and ImageNet.

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

STUDY = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "densenet121": 1024,
}
NEW = {"efficientnet_v2_s": 1280, "convnext_tiny": 768, "swin_t": 768, "vit_b_16": 768}


def test_registry_keeps_the_study_widths_and_adds_torchvision_families():
    assert {name: BACKBONES[name] for name in STUDY} == STUDY
    assert {name: BACKBONES[name] for name in NEW} == NEW
    # Every torchvision classification model with a linear head, found by its structure.
    assert {"regnet_y_400mf", "mobilenet_v3_small", "maxvit_t", "swin_v2_t", "vit_h_14"} <= set(
        BACKBONES
    )
    assert BACKBONES["mobilenet_v3_small"] == 1024  # after its hidden layer, not before
    assert BACKBONES["vgg16"] == 4096 and BACKBONES["regnet_y_400mf"] == 440
    assert "squeezenet1_0" not in BACKBONES  # its head is a convolution
    assert len(BACKBONES) == len(list(BACKBONES)) > 70
    with pytest.raises(KeyError):
        BACKBONES["squeezenet1_0"]
    with pytest.raises(TypeError):
        BACKBONES["vgg16"] = 4096  # read-only


def _crops(n_phases, side=32, n=2):
    return np.random.default_rng(0).normal(size=(n, n_phases, side, side)).astype(np.float32)


def _check_fitted(cnn, X, n_branches, width, channels):
    features = cnn.transform(X)
    assert features.shape == (len(X), n_branches * width)
    assert features.dtype == np.float64 and np.isfinite(features).all()
    assert cnn.get_feature_names_out().shape == (n_branches * width,)
    assert cnn.branch_width_ == width
    assert cnn.predict_proba(X).shape == (len(X), 2)
    module = cnn.net_.module_
    assert isinstance(module, FeatureFusionNet if cnn.mode == "ff" else MultiChannelNet)
    assert len(module.branches) == len(module.target_layers()) == n_branches
    for branch in module.branches:
        assert _backbones._first_conv(branch)[1].in_channels == channels
    maps = cnn.grad_cam(X)
    assert maps.shape == (len(X), n_branches, *X.shape[2:]) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and 0 <= maps.min() and maps.max() <= 1


@pytest.mark.parametrize("backbone", sorted(STUDY))
@pytest.mark.parametrize("mode", ["mc", "ff"])
def test_output_shapes_study_backbones_both_modes(backbone, mode):
    # Untrained (max_epochs=0), raw features, two 32x32 crops of three phases.
    X = _crops(3)
    cnn = SkorchCNNFeaturizer(backbone, mode, n_components=None, max_epochs=0, device="cpu")
    cnn.fit(X, [0, 1])
    _check_fitted(cnn, X, 3 if mode == "ff" else 1, STUDY[backbone], 1 if mode == "ff" else 3)


@pytest.mark.parametrize("backbone", sorted(NEW))
@pytest.mark.parametrize("mode", ["mc", "ff"])
def test_output_shapes_new_backbones_both_modes(backbone, mode):
    # Two phases, to halve the FF branches; 40-pixel crops, which no backbone takes as its own
    # size (ViT is built for 32 here, its default 224 is checked below; Swin pads its windows).
    X = _crops(2, side=40)
    params = {"input_size": 32} if backbone == "vit_b_16" else {}
    cnn = SkorchCNNFeaturizer(
        backbone, mode, n_components=None, max_epochs=0, device="cpu", **params
    )
    cnn.fit(X, [0, 1])
    _check_fitted(cnn, X, 2 if mode == "ff" else 1, NEW[backbone], 1 if mode == "ff" else 2)


@pytest.mark.parametrize(
    ("backbone", "input_size", "rule"),
    [
        ("resnet18", None, (1, False)),  # any side: crops as they are
        ("densenet121", None, (29, False)),
        ("inception_v3", None, (75, False)),  # enlarged to the smallest side it takes
        ("swin_t", None, (32, False)),  # pads to whole windows: any side from 32
        ("vit_b_16", None, (224, True)),  # built for one size: always resized to it
        ("vit_h_14", None, (518, True)),  # the size of its ImageNet weights
        ("maxvit_t", None, (224, True)),
        ("resnet18", 64, (64, True)),
        ("vit_b_16", 48, (48, True)),
    ],
)
def test_input_rule(backbone, input_size, rule):
    assert _backbones.input_rule(backbone, input_size) == rule


def test_crops_resized_inside_the_network():
    # ViT-B/16 at its default: crops of any size reach it as 224x224.
    seen = []
    vit = MultiChannelNet("vit_b_16", n_phases=1).eval()
    vit.branches[0].conv_proj.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        assert vit(torch.zeros(1, 1, 40, 40)).shape == (1, 2)
    assert seen == [(1, 1, 224, 224)]
    # Inception V3 enlarges 32-pixel crops to 75; an explicit input_size resizes everything.
    inception = MultiChannelNet("inception_v3", n_phases=1)
    assert inception._resize(torch.zeros(2, 1, 32, 48)).shape == (2, 1, 75, 75)
    assert inception._resize(torch.zeros(2, 1, 80, 90)).shape == (2, 1, 80, 90)
    resnet = MultiChannelNet("resnet18", n_phases=1, input_size=64)
    x = torch.zeros(2, 1, 32, 32)
    assert resnet._resize(x).shape == (2, 1, 64, 64)
    assert MultiChannelNet("resnet18", n_phases=1)._resize(x) is x  # the study's path: untouched
    # Crops smaller than 32 pixels are refused, unless the network resizes every crop.
    X = _crops(1, side=16)
    with pytest.raises(ValueError, match="too small"):
        SkorchCNNFeaturizer(n_components=None, max_epochs=0, device="cpu").fit(X, [0, 1])
    cnn = SkorchCNNFeaturizer(n_components=None, max_epochs=0, input_size=32, device="cpu")
    assert cnn.fit(X, [0, 1]).grad_cam(X).shape == (2, 1, 16, 16)


def test_input_sizes_a_backbone_cannot_take():
    X = _crops(1)
    with pytest.raises(ValueError, match="smaller than the 75x75 pixels"):
        SkorchCNNFeaturizer("inception_v3", input_size=64, max_epochs=0).fit(X, [0, 1])
    with pytest.raises(ValueError, match="cannot be built for 40x40 inputs"):
        MultiChannelNet("vit_b_16", n_phases=1, input_size=40)  # not a multiple of 16


def test_vit_grad_cam_reads_tokens_that_reach_the_class_token():
    # The last encoder output feeds only the class token; Grad-CAM must read the tokens entering
    # the last block, where the gradient of the score reaches the patch tokens.
    module = MultiChannelNet("vit_b_16", n_phases=1, input_size=64).eval()
    (layer,) = module.target_layers()
    assert layer is module.branches[0].encoder.layers[-1].ln_1
    kept = []
    handle = layer.register_forward_hook(lambda m, i, out: kept.append(out))
    try:
        score = module(torch.randn(2, 1, 64, 64))[:, 1].sum()
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, kept)
    grid = module.cam_grid(grad)
    assert grid.shape == (2, 768, 4, 4)  # 64 / 16 = 4 patches a side, the class token dropped
    assert grid.abs().amax(dim=(1, 2, 3)).min() > 0
    # Token (row r, column c) lands at grid[:, :, r, c]: the patch order of the embedding.
    tokens = torch.arange(17.0).reshape(1, 17, 1).expand(1, 17, 3)
    np.testing.assert_array_equal(module.cam_grid(tokens)[0, 0], np.arange(1, 17).reshape(4, 4))


@pytest.mark.parametrize(
    ("backbone", "layer"),
    [
        ("regnet_x_400mf", "trunk_output"),
        ("mobilenet_v3_small", "features"),
        ("shufflenet_v2_x0_5", "conv5"),
        ("mnasnet0_5", "layers"),
        ("googlenet", "inception5b"),
        ("swin_t", "permute"),
    ],
)
def test_grad_cam_layers_of_other_families(backbone, layer):
    X = _crops(1, side=48)
    cnn = SkorchCNNFeaturizer(backbone, "mc", n_components=None, max_epochs=0, device="cpu")
    cnn.fit(X, [0, 1])
    branch = cnn.net_.module_.branches[0]
    assert cnn.net_.module_.target_layers() == [branch.get_submodule(layer)]
    maps = cnn.grad_cam(X)
    assert maps.shape == (2, 1, 48, 48) and np.isfinite(maps).all()


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


# ----------------------------------------------------------------------------- newer families


def test_new_backbone_weights_from_state_dict_file_and_imagenet_cache(offline):
    # EfficientNet V2-S weights written where torchvision's cache expects its ImageNet file: read
    # from the path in MC and, without network, as weights="imagenet" in FF.
    model = torchvision.models.efficientnet_v2_s(weights=None)
    stem = model.features[0][0]
    conv = torch.linspace(-1, 1, stem.weight.numel()).reshape(stem.weight.shape)
    with torch.no_grad():
        stem.weight.copy_(conv)
    state = model.state_dict()
    offline.mkdir(parents=True)
    url = torchvision.models.EfficientNet_V2_S_Weights.DEFAULT.url
    path = offline / url.rsplit("/", 1)[-1]
    torch.save(state, path)
    X = _crops(2)
    settings = {"n_components": None, "max_epochs": 0, "device": "cpu"}

    mc = SkorchCNNFeaturizer("efficientnet_v2_s", "mc", weights=path, **settings).fit(X, [0, 1])
    trunk = mc.net_.module_.branches[0]
    # Two channels: the mean RGB kernel on each, scaled by 3/2 (a grey image on both channels
    # gives the answer of the RGB network to that grey image).
    torch.testing.assert_close(
        trunk.features[0][0].weight, conv.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1) * 1.5
    )
    torch.testing.assert_close(trunk.features[7][0].weight, state["features.7.0.weight"])
    torch.testing.assert_close(trunk.features[7][1].running_var, state["features.7.1.running_var"])

    ff = SkorchCNNFeaturizer("efficientnet_v2_s", "ff", weights="imagenet", **settings)
    ff.fit(X, [0, 1])
    for branch in ff.net_.module_.branches:
        torch.testing.assert_close(branch.features[0][0].weight, conv.sum(dim=1, keepdim=True))
        torch.testing.assert_close(branch.features[7][0].weight, state["features.7.0.weight"])


def test_new_backbone_imagenet_offline_fails_fast_with_advice(offline):
    X = np.zeros((2, 3, 32, 32), np.float32)
    start = time.perf_counter()
    with pytest.raises(OSError, match="could not be downloaded") as info:
        SkorchCNNFeaturizer("convnext_tiny", weights="imagenet", max_epochs=0).fit(X, [0, 1])
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "convnext_tiny" in message and "ConvNeXt_Tiny_Weights.IMAGENET1K_V1" in message
    url = torchvision.models.ConvNeXt_Tiny_Weights.DEFAULT.url
    assert str(offline / url.rsplit("/", 1)[-1]) in message  # where to put the file by hand


def test_vit_weights_of_another_resolution_are_interpolated():
    # ImageNet ViT-B/16 weights are for 224 pixels (14x14 patches); a ViT built for 64 pixels
    # takes them with its position embeddings interpolated to 4x4 patches by torchvision.
    from torchvision.models.vision_transformer import interpolate_embeddings

    state = torchvision.models.vit_b_16(weights=None).state_dict()
    before = state["encoder.pos_embedding"].clone()
    vit = _backbones.build_backbone("vit_b_16", 1, state, input_size=64)
    expected = interpolate_embeddings(64, 16, {"encoder.pos_embedding": before.clone()})
    assert vit.encoder.pos_embedding.shape == (1, 17, 768)
    torch.testing.assert_close(vit.encoder.pos_embedding, expected["encoder.pos_embedding"])
    torch.testing.assert_close(vit.encoder.pos_embedding[:, 0], before[:, 0])  # class token
    assert torch.equal(state["encoder.pos_embedding"], before)  # the caller's dict is untouched
    torch.testing.assert_close(vit.conv_proj.weight, state["conv_proj.weight"].sum(1, True))
    torch.testing.assert_close(
        vit.encoder.layers[-1].mlp[0].weight, state["encoder.layers.encoder_layer_11.mlp.0.weight"]
    )
    assert isinstance(vit.heads.head, torch.nn.Identity)
    assert vit(torch.zeros(1, 1, 64, 64)).shape == (1, 768)


def test_auxiliary_heads_of_googlenet_weights_are_left_out():
    # torchvision's GoogLeNet weights hold its two auxiliary classifiers, which are not built here.
    state = torchvision.models.googlenet(
        weights=None, aux_logits=True, init_weights=True
    ).state_dict()
    assert any(key.startswith("aux1.") for key in state)
    net = _backbones.build_backbone("googlenet", 1, state)
    assert net.aux1 is None and net.aux2 is None
    torch.testing.assert_close(
        net.inception5b.branch1.conv.weight, state["inception5b.branch1.conv.weight"]
    )
