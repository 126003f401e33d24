"""SkorchCNNFeaturizer on the CPU: the scikit-learn contract, on tiny crops and a fit of a second.

scikit-learn's common checks (``parametrize_with_checks``) build 2-D arrays; the featurizer takes
4-D crops and declares ``two_d_array=False``, for which ``parametrize_with_checks`` yields nothing
but the clone check. So the checks that need no data are run here one by one, and the ones that do
(fit returns self, unfitted errors, inputs not mutated, same output for the same random_state,
clone and set_params in a grid search, fit_transform, set_output) are written out on crops, as
imbalanced-learn does for its own estimators.

The tiny crops and the quick featurizer are ``tiny`` and ``quick`` in ``conftest.py``. Learning,
Grad-CAM and pickling of fitted models are tested in ``test_featurizer_learning.py``, 2.5D crops in
``test_featurizer_25d.py``, the batches, augmentation and network pickling in
``test_featurizer_internals.py``.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics.deep import SkorchCNNFeaturizer

# ----------------------------------------------------------------------------- transform


def test_fit_transform_matches_fit_then_transform(tiny, quick):
    X, y = tiny()
    two_phases = X[:, :2]  # FF with two branches: half the cost of three
    a = quick(mode="ff").fit_transform(two_phases, y)
    b = quick(mode="ff").fit(two_phases, y)
    np.testing.assert_allclose(a, b.transform(two_phases), rtol=1e-5, atol=1e-5)
    assert a.shape == (8, 4) and b.get_feature_names_out()[2] == "cnn_phase1_pc0"
    raw = quick(n_components=None, phases=["a", "b", "c"])
    assert raw.fit_transform(X, y).shape == (8, 512)
    assert raw.get_feature_names_out()[-1] == "cnn_mc_511"


def test_set_output_pandas(tiny, quick):
    X, y = tiny()
    cnn = quick().set_output(transform="pandas")
    frame = cnn.fit_transform(X, y)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(cnn.get_feature_names_out())
    assert isinstance(cnn.transform(X), pd.DataFrame)


# ----------------------------------------------------------------------------- reproducibility


def test_same_random_state_same_fit_and_global_rng_untouched(tiny, quick):
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


def test_clone_and_set_params_in_grid_search(tiny, quick):
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


def test_early_stopping_lr_schedule_and_verbose(capsys, tiny, quick):
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


def test_fit_returns_self_keeps_input_and_sets_attributes(tiny, quick):
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


def test_unfitted_raises(tiny):
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
def test_bad_input(X, y, error, match, quick):
    with pytest.raises(error, match=match):
        quick().fit(X, y)


def test_bad_parameters_and_shapes(tiny, quick):
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
