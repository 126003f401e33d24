"""CorrelationFilter and LassoSelector: properties for any data, and the study's use."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from p53radiomics.feature_selection import CorrelationFilter, LassoSelector
from p53radiomics.feature_selection._correlation import _abs_correlation

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(3, 25), st.integers(1, 12)), elements=finite),
    st.floats(0.0, 1.0),
    st.sampled_from(["spearman", "pearson"]),
)
def test_no_kept_pair_above_the_threshold(X, threshold, method):
    selector = CorrelationFilter(threshold=threshold, method=method).fit(X)
    kept = selector.get_support()
    assert kept.any()  # a single feature is never in conflict: something always stays
    corr = _abs_correlation(X[:, kept], method)
    assert (corr <= threshold + 1e-9).all()
    dropped = np.flatnonzero(~kept)
    assert sorted(selector.drop_order_) == dropped.tolist()
    # each dropped feature was correlated above the threshold with some feature
    full = _abs_correlation(X, method)
    assert all((full[j] > threshold).any() for j in dropped)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 10), st.floats(0.3, 0.95))
def test_kept_set_does_not_depend_on_column_order(seed, p, threshold):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(40, 2))
    X = latent @ rng.normal(size=(2, p)) + 0.3 * rng.normal(size=(40, p))  # many correlated pairs
    corr = _abs_correlation(X, "spearman")
    means = corr.sum(axis=1)
    assume(
        np.min(np.diff(np.sort(means))) > 1e-6
    )  # no ties of the overall means: the order is ignored
    perm = rng.permutation(p)
    a = CorrelationFilter(threshold=threshold).fit(X).get_support()
    b = CorrelationFilter(threshold=threshold).fit(X[:, perm]).get_support()
    assert a[perm].tolist() == b.tolist()


def test_spearman_equals_scipy_and_names_pass_through():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(30, 4)) ** 3, columns=["a", "b", "c", "d"])
    np.testing.assert_allclose(
        _abs_correlation(X.to_numpy(), "spearman"),
        np.abs(spearmanr(X).statistic) - np.eye(4),
        atol=1e-12,
    )
    X["e"] = X["a"] * 2 + 0.001 * rng.normal(size=30)
    selector = CorrelationFilter().set_output(transform="pandas").fit(X)
    out = selector.transform(X)
    assert list(out.columns) == list(selector.get_feature_names_out()) and len(out.columns) == 4
    assert ("a" in out.columns) != ("e" in out.columns)


def test_constant_feature_is_kept_and_exact_duplicate_keeps_the_first():
    x = np.arange(10.0)
    X = np.c_[x, np.ones(10), x]
    assert CorrelationFilter().fit(X).get_support().tolist() == [True, True, False]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(12, 40))
def test_lasso_selection_is_never_empty(seed, p, n):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(int)
    rng.shuffle(y)  # pure noise: the chosen model is often all zeros
    selector = LassoSelector(cv=3, Cs=5, random_state=0).fit(X, y)
    assert selector.get_support().sum() >= 1
    assert selector.transform(X).shape[1] == selector.get_support().sum()


def test_lasso_finds_the_informative_features_in_the_radiomics_style_chain():
    rng = np.random.default_rng(1)
    n = 200
    informative = rng.normal(size=(n, 2))
    y = (informative @ [1.5, -1.0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    noise = rng.normal(size=(n, 30))
    X = pd.DataFrame(
        np.c_[informative, informative[:, :1] * 1.01, noise], columns=[f"f{i}" for i in range(33)]
    )
    chain = make_pipeline(
        StandardScaler(), CorrelationFilter(), LassoSelector(random_state=0, selection="1se")
    ).set_output(transform="pandas")
    out = chain.fit_transform(X, y)
    kept = set(out.columns)
    assert {"f1"} <= kept and ({"f0"} <= kept or {"f2"} <= kept)
    assert not ({"f0", "f2"} <= kept)  # the near-duplicate went in the correlation filter
    assert len(kept) <= 8
    lasso = chain[-1]
    assert lasso.C_ in np.logspace(-3, 3, 20) and not lasso.fallback_


def test_lasso_errors():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="1 class"):
        LassoSelector().fit(X, np.ones(10))
    with pytest.raises(ValueError, match="at least 2 samples of each class"):
        LassoSelector().fit(X, np.r_[1, np.zeros(9)])
    with pytest.raises(ValueError, match="Cs must be positive"):
        LassoSelector(Cs=[-1.0, 1.0]).fit(X, np.r_[np.ones(5), np.zeros(5)])
