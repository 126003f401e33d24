"""SkorchCNNFeaturizer on the CPU: the scikit-learn contract, learning, Grad-CAM, pickling.

scikit-learn's common checks (``parametrize_with_checks``) build 2-D arrays; the featurizer takes
4-D crops and declares ``two_d_array=False``, for which ``parametrize_with_checks`` yields nothing
but the clone check. So the checks that need no data are run here one by one, and the ones that do
(fit returns self, unfitted errors, inputs not mutated, same output for the same random_state,
pickling, clone and set_params in a grid search) are written out on crops, as imbalanced-learn
does for its own estimators.

The toy task: noise crops; in class "mutant" a bright square sits near the centre of a random
quadrant on every phase. 64x64 crops give ResNet18's last stage a 2x2 grid, one cell per quadrant,
so Grad-CAM can be checked against the square's quadrant.

2.5D crops (``n_phases``): three phases of three slices each, as nine channels.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks
from sklearn.utils._param_validation import InvalidParameterError
from skorch.dataset import Dataset
from torch.utils.data import Subset

from p53radiomics.deep import SkorchCNNFeaturizer
from p53radiomics.deep._modules import RandomCropFlip
from p53radiomics.deep._net import ArrayBatches
from p53radiomics.plotting import GradCAMDisplay

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("deep.test_featurizer")

CLASSES = np.array(["mutant", "wild"])  # sorted, so "mutant" is classes_[0]
SIZE = 64  # the side of make_toy's crops (tests/deep/conftest.py)
HALF = SIZE // 2


def tiny(n=8, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, size, size)).astype(np.float32), np.arange(n) % 2


def quick(**params):
    """A featurizer that fits in about a second on tiny crops."""
    defaults = {"mode": "mc", "n_components": 2, "max_epochs": 1, "batch_size": 8}
    return SkorchCNNFeaturizer(**{**defaults, **params, "device": "cpu", "random_state": 0})


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


def test_fit_transform_matches_fit_then_transform():
    X, y = tiny()
    two_phases = X[:, :2]  # FF with two branches: half the cost of three
    a = quick(mode="ff").fit_transform(two_phases, y)
    b = quick(mode="ff").fit(two_phases, y)
    np.testing.assert_allclose(a, b.transform(two_phases), rtol=1e-5, atol=1e-5)
    assert a.shape == (8, 4) and b.get_feature_names_out()[2] == "cnn_phase1_pc0"
    raw = quick(n_components=None, phases=["a", "b", "c"])
    assert raw.fit_transform(X, y).shape == (8, 512)
    assert raw.get_feature_names_out()[-1] == "cnn_mc_511"


def test_set_output_pandas():
    X, y = tiny()
    cnn = quick().set_output(transform="pandas")
    frame = cnn.fit_transform(X, y)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(cnn.get_feature_names_out())
    assert isinstance(cnn.transform(X), pd.DataFrame)


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


# ----------------------------------------------------------------------------- reproducibility


def test_same_random_state_same_fit_and_global_rng_untouched():
    X, y = tiny()
    before = torch.get_rng_state()
    a = quick(augment=True).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    b = quick(augment=True).fit(X, y)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    np.testing.assert_array_equal(b.fit(X, y).transform(X), a.transform(X))  # idempotent fit
    c = quick(augment=True, random_state=1)
    c.set_params(random_state=1)
    assert not np.allclose(c.fit(X, y).predict_proba(X), a.predict_proba(X))


# ----------------------------------------------------------------------------- model selection


def test_clone_and_set_params_in_grid_search():
    X, y = tiny(n=16)
    X = X[:, :2]  # FF with two branches: half the cost of three
    pipe = Pipeline([("cnn", quick()), ("classifier", LogisticRegression())])
    search = GridSearchCV(pipe, {"cnn__mode": ["mc", "ff"]}, cv=2, scoring="roc_auc")
    search.fit(X, y)
    assert set(search.cv_results_["param_cnn__mode"]) == {"mc", "ff"}
    best = search.best_estimator_.named_steps["cnn"]
    assert best.mode == search.best_params_["cnn__mode"]
    assert search.predict_proba(X).shape == (16, 2)
    # The featurizer is itself a classifier with predict_proba.
    alone = GridSearchCV(quick(), {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert alone.best_params_["lr"] in (1e-3, 1e-2)


def test_early_stopping_lr_schedule_and_verbose(capsys):
    X, y = tiny(n=12)
    cnn = quick(max_epochs=4, validation_fraction=0.25, patience=1, verbose=1).fit(X, y)
    history = cnn.net_.history
    assert 1 <= len(history) <= 4
    assert all(np.isfinite(history[:, "valid_loss"]))
    lrs = history[:, "event_lr"]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))  # cosine annealing
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_loss" in out
    silent = quick(lr_schedule="constant").fit(X, y)
    assert capsys.readouterr().out == ""
    assert "event_lr" not in silent.net_.history[-1]
    progress = quick(verbose=2).fit(X, y)
    assert "progress" in dict(progress.net_.callbacks_)  # skorch's ProgressBar (tqdm, on stderr)


# ----------------------------------------------------------------------------- contract


def test_fit_returns_self_keeps_input_and_sets_attributes():
    X, y = tiny()
    X_copy, y_copy = X.copy(), y.copy()
    cnn = quick()
    assert cnn.fit(X, y) is cnn
    cnn.transform(X)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
    assert cnn.n_features_in_ == 3 and cnn.phases_ == ("ap", "pvp", "dp")
    assert cnn.channel_mean_.shape == (3,) and cnn.branch_width_ == 512
    assert cnn.device_ == "cpu" and cnn.device == "cpu"
    # float64 input is accepted (converted to float32), parameters are unchanged.
    assert cnn.fit(X.astype(np.float64), y).get_params()["n_components"] == 2


def test_unfitted_raises():
    X, _ = tiny()
    cnn = SkorchCNNFeaturizer()
    for method in (cnn.transform, cnn.predict, cnn.predict_proba, cnn.grad_cam):
        with pytest.raises(NotFittedError):
            method(X)
    with pytest.raises(NotFittedError):
        cnn.get_feature_names_out()


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (np.zeros((4, 3, 32), np.float32), [0, 1, 0, 1], ValueError, "Expected crops of shape"),
        (np.zeros((4, 3, 16, 16), np.float32), [0, 1, 0, 1], ValueError, "too small"),
        (np.full((4, 3, 32, 32), np.nan, np.float32), [0, 1, 0, 1], ValueError, "NaN"),
        (np.zeros((4, 3, 32, 32), np.float32), [1, 1, 1, 1], ValueError, "single class"),
        (np.zeros((4, 3, 32, 32), np.float32), [0.5, 1, 0, 1], ValueError, "Unknown label"),
    ],
)
def test_bad_input(X, y, error, match):
    with pytest.raises(error, match=match):
        quick().fit(X, y)


def test_bad_parameters_and_shapes():
    X, y = tiny()
    with pytest.raises(InvalidParameterError, match="backbone"):
        quick(backbone="squeezenet1_0").fit(X, y)  # its head is a convolution
    with pytest.raises(InvalidParameterError, match="mode"):
        quick(mode="late").fit(X, y)
    with pytest.raises(ValueError, match="must name each of the 3 phases"):
        quick(phases=["ap", "pvp"]).fit(X, y)
    with pytest.raises(ValueError, match="n_components=9 exceeds"):
        quick(n_components=9).fit(X, y)
    cnn = quick().fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        cnn.transform(X[:, :2])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SkorchCNNFeaturizer(device="cuda", max_epochs=0).fit(X, y)


DATA_FREE_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
    "check_do_not_raise_errors_in_init_or_set_params",
]


@pytest.mark.parametrize("check", DATA_FREE_CHECKS)
def test_sklearn_checks_that_need_no_data(check):
    getattr(estimator_checks, check)("SkorchCNNFeaturizer", SkorchCNNFeaturizer())


def test_clone_keeps_parameters_unchanged():
    cnn = SkorchCNNFeaturizer("densenet121", "mc", "imagenet", None, phases=("a", "b"))
    twin = clone(cnn)
    assert twin.get_params() == cnn.get_params() and twin is not cnn
    assert twin.set_params(backbone="resnet50").backbone == "resnet50"


# ----------------------------------------------------------------------------- internals


def test_array_batches_merge_single_sample_tail_and_follow_subsets():
    X = np.arange(9 * 3 * 32 * 32, dtype=np.float32).reshape(9, 3, 32, 32)
    y = np.arange(9)
    train = ArrayBatches(Dataset(X, y), batch_size=4, shuffle=True)
    sizes = [len(xb) for xb, _ in train]
    assert sizes == [4, 5] and len(train) == 2
    seen = np.concatenate([yb.numpy() for _, yb in train])
    assert sorted(seen) == list(range(9))
    valid = ArrayBatches(Subset(Subset(Dataset(X, y), [1, 3, 5, 7]), [0, 2]), batch_size=4)
    ((xb, yb),) = list(valid)
    np.testing.assert_array_equal(yb.numpy(), [1, 5])
    np.testing.assert_array_equal(xb.numpy(), X[[1, 5]])
    ((xb, yb),) = list(ArrayBatches(Dataset(X, None), batch_size=16))
    assert yb is None and xb.shape == (9, 3, 32, 32)
    # A single-sample training set still trains (its one batch is not dropped).
    assert quick().fit(X[:3] / 1e4, [0, 1, 0]).predict(X[:1]).shape == (1,)


def test_augmentation_in_training_only_and_seeded():
    x = torch.randn(4, 3, 32, 32)
    augment = RandomCropFlip(0.5)
    augment.eval()
    assert augment(x) is x
    augment.train()
    torch.manual_seed(1)
    a = augment(x)
    torch.manual_seed(1)
    b = augment(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)


def test_pickled_net_leaves_the_optimizer_out_and_trains_on():
    X, y = tiny()
    cnn = quick(max_epochs=2).fit(X, y)
    weights = sum(p.numel() * p.element_size() for p in cnn.net_.module_.parameters())
    blob = pickle.dumps(cnn)
    assert len(blob) < 1.5 * weights  # the network, not AdamW's two moments per weight as well
    assert "optimizer_" in cnn.net_.__dict__  # pickling did not change the original
    assert dict(cnn.net_.callbacks_)["lr_schedule"].lr_scheduler_ is not None
    loaded = pickle.loads(blob)
    np.testing.assert_allclose(loaded.predict_proba(X), cnn.predict_proba(X), rtol=1e-6)
    loaded.net_.partial_fit(X, y.astype(np.int64))  # two more epochs, with a fresh optimizer
    scheduler = dict(loaded.net_.callbacks_)["lr_schedule"].lr_scheduler_
    assert scheduler.optimizer is loaded.net_.optimizer_
    assert len(loaded.net_.history) == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_state_of_a_cuda_net_loads_on_cpu_without_warning(recwarn):
    # What a net fitted on CUDA pickles, as far as a CPU-only machine can write it: device names.
    X, y = tiny()
    net = quick().fit(X, y).net_
    state = net.__getstate__()
    state.update(device="cuda", iterator_train__device="cuda", iterator_valid__device="cuda:0")
    state["module_"] = None  # not reached: skorch keeps the module in the cuda-dependent blob
    loaded = type(net).__new__(type(net))
    loaded.__setstate__(state)
    assert loaded.device == "cpu"
    assert loaded.iterator_train__device == "cpu" and loaded.iterator_valid__device == "cpu"
    assert not loaded.module_.channels_last
    assert not [w for w in recwarn if "cuda" in str(w.message).lower()]
    np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X), atol=1e-6)


# ----------------------------------------------------------------------------- 2.5D crops


@pytest.fixture(scope="module")
def fitted_25d_ff(tiny25):
    X, y = tiny25()
    return quick(mode="ff", n_phases=3).fit(X, y), X, y


def test_25d_ff_one_branch_per_phase_of_its_slices(fitted_25d_ff):
    cnn, X, _ = fitted_25d_ff
    assert cnn.n_features_in_ == 9 and cnn.n_phases_ == 3 and cnn.channels_per_phase_ == 3
    assert cnn.phases_ == ("ap", "pvp", "dp")
    module = cnn.net_.module_
    assert [branch.conv1.in_channels for branch in module.branches] == [3, 3, 3]
    # The z-score is per channel (slice), inside the network.
    np.testing.assert_allclose(cnn.channel_mean_, X.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(module.standardize.mean.flatten().numpy(), cnn.channel_mean_)
    # PCA per branch (phase): 2 components each.
    assert cnn.transform(X).shape == (8, 6) and len(cnn.pca_) == 3
    assert list(cnn.get_feature_names_out()) == [
        f"cnn_{phase}_pc{j}" for phase in ("ap", "pvp", "dp") for j in (0, 1)
    ]
    # Each branch sees exactly its phase's slices: changing the PVP slices (channels 3-5) moves
    # the PVP branch's features only.
    width = cnn.branch_width_
    before = cnn.net_.penultimate(X)
    changed = X.copy()
    changed[:, 3:6] *= -1
    after = cnn.net_.penultimate(changed)
    np.testing.assert_array_equal(before[:, :width], after[:, :width])
    np.testing.assert_array_equal(before[:, 2 * width :], after[:, 2 * width :])
    assert not np.allclose(before[:, width : 2 * width], after[:, width : 2 * width])


def test_25d_mc_all_channels_into_one_backbone(tiny25):
    X, y = tiny25()
    cnn = quick(mode="mc", n_phases=3).fit(X, y)
    assert cnn.net_.module_.branches[0].conv1.in_channels == 9
    assert cnn.n_phases_ == 3 and cnn.channels_per_phase_ == 3
    assert cnn.transform(X).shape == (8, 2) and cnn.get_feature_names_out()[0] == "cnn_mc_pc0"
    assert cnn.grad_cam(X[:2]).shape == (2, 1, 32, 32)


def test_25d_grad_cam_per_phase_and_its_display(fitted_25d_ff):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cnn, X, _ = fitted_25d_ff
    maps = cnn.grad_cam(X[:2])
    assert maps.shape == (2, 3, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2, 3)), 1)
    # The display shows each phase's centre slice (the largest-ROI one) under its map.
    display = GradCAMDisplay.from_arrays(
        X[0], maps[0], phase_names=["AP", "PVP", "DP"], normalize=False, colorbar=False
    )
    for j, (image, overlay) in enumerate(zip(display.images_, display.overlays_, strict=True)):
        np.testing.assert_array_equal(image.get_array(), X[0, 3 * j + 1])
        np.testing.assert_array_equal(overlay.get_array(), maps[0, j])
    plt.close(display.figure_)
    # One joint (MC) map of shape (1, H, W) over the three phases.
    joint = GradCAMDisplay.from_arrays(X[0], maps[0, :1], phase_names=["AP", "PVP", "DP"])
    assert len(joint.overlays_) == 3
    plt.close(joint.figure_)


def test_25d_channels_must_split_into_phases(tiny25):
    X, y = tiny25()
    with pytest.raises(ValueError, match="9 channels, which n_phases=2 does not divide"):
        quick(n_phases=2).fit(X, y)
    with pytest.raises(ValueError, match=r"9 phases of X once \(pass n_phases for 2.5D"):
        quick(phases=["ap", "pvp", "dp"]).fit(X, y)
    with pytest.raises(InvalidParameterError, match="n_phases"):
        quick(n_phases=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="input_size"):
        quick(input_size=16).fit(X, y)


def test_25d_pickle_clone_and_set_params(fitted_25d_ff):
    cnn, X, y = fitted_25d_ff
    loaded = pickle.loads(pickle.dumps(cnn))
    assert loaded.n_phases == 3 and loaded.channels_per_phase_ == 3
    np.testing.assert_array_equal(loaded.predict_proba(X), cnn.predict_proba(X))
    np.testing.assert_allclose(loaded.transform(X), cnn.transform(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(loaded.grad_cam(X[:2]), cnn.grad_cam(X[:2]))
    twin = clone(cnn)
    assert twin.get_params()["n_phases"] == 3 and not hasattr(twin, "net_")
    # Back to one phase per channel: nine phases, named phase0..phase8.
    twin.set_params(mode="mc", n_phases=None).fit(X, y)
    assert twin.n_phases_ == 9 and twin.phases_[-1] == "phase8"
    assert twin.transform(X).shape == (8, 2)


def test_featurizer_pickled_before_25d_still_predicts():
    # A featurizer and network pickled before n_phases and input_size existed.
    X, y = tiny()
    cnn = quick().fit(X, y)
    old = pickle.loads(pickle.dumps(cnn))
    for name in ("channels_per_phase", "resize_side", "resize_exact"):
        del old.net_.module_.__dict__[name]
    state = old.__getstate__()
    for name in ("n_phases", "input_size", "n_phases_", "channels_per_phase_"):
        del state[name]
    restored = SkorchCNNFeaturizer.__new__(SkorchCNNFeaturizer)
    restored.__setstate__(state)
    assert restored.get_params()["n_phases"] is None and restored.n_phases_ == 3
    np.testing.assert_array_equal(restored.predict_proba(X), cnn.predict_proba(X))
    assert restored.grad_cam(X[:1]).shape == (1, 1, 32, 32)
