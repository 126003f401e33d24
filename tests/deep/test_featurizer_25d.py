"""SkorchCNNFeaturizer on 2.5D crops (``n_phases``), on the CPU: three phases of three slices each,
as nine channels; one FF branch per phase, MC over all channels, Grad-CAM per phase and its display,
the channel count checked against the phases, pickling and clone, and a featurizer pickled before
2.5D existed.

The 2.5D crops are ``tiny25`` in ``conftest.py``; the fitted FF model is a module-scoped fixture,
fitted once for the tests here.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.deep import SkorchCNNFeaturizer
from p53radiomics.plotting import GradCAMDisplay

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("deep.test_featurizer_25d")

# ----------------------------------------------------------------------------- 2.5D crops


@pytest.fixture(scope="module")
def fitted_25d_ff(tiny25, quick):
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


def test_25d_mc_all_channels_into_one_backbone(tiny25, quick):
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


def test_25d_channels_must_split_into_phases(tiny25, quick):
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


def test_featurizer_pickled_before_25d_still_predicts(tiny, quick):
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
