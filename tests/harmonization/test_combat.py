"""Tests of p53radiomics.harmonization.ComBatHarmonizer.

neuroCombat is the independent reference for the values; synthetic scanner effects injected into a
batch-free signal show what the harmoniser removes from held-out data and what it keeps.
"""

import contextlib
import io
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from p53radiomics import ComBatHarmonizer
from p53radiomics.exceptions import CohortError, UnseenBatchWarning
from p53radiomics.utils.estimator_checks import check_image_estimator


def _cohort(n_per_batch=(15, 25, 20), n_features=12, *, seed=1, scanner="scanner"):
    """Features with a per-scanner shift and scale, as a table indexed by patient ids."""
    rng = np.random.default_rng(seed)
    batches = np.repeat([f"S{i + 1}" for i in range(len(n_per_batch))], n_per_batch)
    X = rng.normal(size=(len(batches), n_features)) * rng.uniform(0.5, 5, n_features)
    X += rng.normal(0, 10, n_features)
    for b in np.unique(batches):
        rows = batches == b
        X[rows] = X[rows] * rng.uniform(0.5, 2, n_features) + rng.normal(0, 2, n_features)
    table = pd.DataFrame(
        X,
        columns=[f"f{j}" for j in range(n_features)],
        index=[f"P{i:03d}" for i in range(len(batches))],
    )
    table[scanner] = batches
    return table


def _neurocombat(table, **kwargs):
    from neuroCombat import neuroCombat

    features = table.drop(columns="scanner").to_numpy(np.float64)
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints its progress
        result = neuroCombat(features.T.copy(), table[["scanner"]], "scanner", **kwargs)
    return result["data"].T


# --------------------------------------------------------------------------------------------------
# (a) Correctness against neuroCombat
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parametric", [True, False])
@pytest.mark.parametrize("mean_only", [False, True])
def test_fit_transform_equals_neurocombat(parametric, mean_only):
    table = _cohort()
    expected = _neurocombat(table, parametric=parametric, mean_only=mean_only)
    combat = ComBatHarmonizer(parametric=parametric, mean_only=mean_only)
    got = combat.fit_transform(table)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)
    # and the harmonised features really differ from the input: the batch effect was there
    assert np.abs(got - table.drop(columns="scanner").to_numpy()).max() > 1.0


def test_estimates_equal_neurocombat():
    from neuroCombat import neuroCombat

    table = _cohort(n_per_batch=(10, 30), n_features=6, seed=4)
    features = table.drop(columns="scanner").to_numpy(np.float64)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = neuroCombat(features.T.copy(), table[["scanner"]], "scanner")["estimates"]
    combat = ComBatHarmonizer().fit(table)
    assert combat.batches_.tolist() == ["S1", "S2"]
    assert combat.batch_counts_.tolist() == [10, 30]
    np.testing.assert_allclose(combat.var_pooled_, ref["var.pooled"].ravel(), rtol=1e-10)
    np.testing.assert_allclose(combat.grand_mean_, ref["stand.mean"][:, 0], rtol=1e-10)
    np.testing.assert_allclose(combat.gamma_star_, ref["gamma.star"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(combat.delta_star_, ref["delta.star"], rtol=1e-8)


# --------------------------------------------------------------------------------------------------
# (b) What it removes from held-out data, and what it keeps
# --------------------------------------------------------------------------------------------------
def _scanner_study(seed=0, n=480, n_scanners=4, n_features=20):
    """A batch-free signal (feature 0 follows a hidden label, balanced across scanners), then
    per-scanner additive and multiplicative effects; split into train and test."""
    rng = np.random.default_rng(seed)
    scanner = np.tile(np.arange(n_scanners), n // n_scanners)
    label = np.tile(np.repeat([0, 1], n_scanners), n // (2 * n_scanners))
    clean = rng.normal(size=(n, n_features))
    clean[:, 0] += 1.0 * label
    shift = rng.normal(0, 3, (n_scanners, n_features))
    scale = rng.uniform(0.4, 2.5, (n_scanners, n_features))
    observed = clean * scale[scanner] + shift[scanner]
    table = pd.DataFrame(observed, columns=[f"f{j}" for j in range(n_features)])
    table["scanner"] = [f"S{s}" for s in scanner]
    test = np.arange(n) % 3 == 0  # every scanner and both labels in both parts
    return table, clean, label, test


def _between_scanner_variance(features, scanner):
    """Variance over scanners of each feature's mean, summed over the features."""
    return float(pd.DataFrame(features).groupby(np.asarray(scanner)).mean().var(axis=0).sum())


def test_removes_an_injected_scanner_effect_from_held_out_data():
    table, clean, label, test = _scanner_study()
    combat = ComBatHarmonizer().fit(table[~test])
    held_out = combat.transform(table[test])
    scanner = table.loc[test, "scanner"]
    before = _between_scanner_variance(table[test].drop(columns="scanner"), scanner)
    after = _between_scanner_variance(held_out, scanner)
    assert after <= 0.1 * before, (before, after)
    # per-scanner spread evened out too: each scanner's SD of a feature near the pooled SD
    sds = pd.DataFrame(held_out).groupby(scanner.to_numpy()).std()
    raw_sds = table[test].drop(columns="scanner").groupby(scanner).std()
    assert (sds.max() / sds.min()).median() < 0.5 * (raw_sds.max() / raw_sds.min()).median()


def test_keeps_a_batch_free_signal():
    table, clean, label, test = _scanner_study(seed=3)
    combat = ComBatHarmonizer().fit(table[~test])
    held_out = combat.transform(table[test])

    def corr(a):
        return np.corrcoef(a, label[test])[0, 1]

    clean_r, harmonised_r = corr(clean[test, 0]), corr(held_out[:, 0])
    raw_r = corr(table.loc[test, "f0"])
    assert clean_r > 0.35
    assert abs(harmonised_r - clean_r) < 0.05, (clean_r, harmonised_r)
    assert abs(harmonised_r - clean_r) < abs(raw_r - clean_r)  # the scanner effect blurred it
    # the features that carry no label stay uncorrelated with it
    assert np.abs([corr(held_out[:, j]) for j in range(1, held_out.shape[1])]).max() < 0.25


def test_label_is_ignored():
    table = _cohort()
    y = np.random.default_rng(0).integers(0, 2, len(table))
    a = ComBatHarmonizer().fit(table, y).transform(table)
    b = ComBatHarmonizer().fit(table, 1 - y).transform(table)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------------
# (c) A scanner unseen in training
# --------------------------------------------------------------------------------------------------
def test_unseen_scanner_gets_the_pooled_estimates_with_a_warning():
    table = _cohort()
    combat = ComBatHarmonizer().fit(table)
    new = table.iloc[[0, 20, 50, 51]].copy()
    new["scanner"] = ["S9", "S2", "S9", "S10"]
    with pytest.warns(UnseenBatchWarning, match=r"\['S9', 'S10'\].*3 samples.*'P000'"):
        out = combat.transform(new)
    counts = combat.batch_counts_
    np.testing.assert_allclose(
        combat.gamma_pooled_, (counts[:, None] * combat.gamma_star_).sum(0) / counts.sum()
    )
    np.testing.assert_allclose(
        combat.delta_pooled_, (counts[:, None] * combat.delta_star_).sum(0) / counts.sum()
    )
    sd = np.sqrt(combat.var_pooled_)
    x = new.drop(columns="scanner").to_numpy()
    z = (x - combat.grand_mean_) / sd
    pooled = (z - combat.gamma_pooled_) / np.sqrt(combat.delta_pooled_) * sd + combat.grand_mean_
    np.testing.assert_allclose(out[[0, 2, 3]], pooled[[0, 2, 3]], rtol=1e-12)
    # a seen scanner in the same table is harmonised with its own estimates
    np.testing.assert_allclose(out[1], combat.transform(table.iloc[[20]])[0], rtol=1e-12)
    assert not np.allclose(out[1], pooled[1])


# --------------------------------------------------------------------------------------------------
# (d) Properties
# --------------------------------------------------------------------------------------------------
@st.composite
def _tables(draw):
    sizes = draw(st.lists(st.integers(2, 7), min_size=1, max_size=4))
    n, p = sum(sizes), draw(st.integers(2, 5))
    values = draw(arrays(np.float64, (n, p), elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
    assume(((np.ptp(values, axis=0) > 0) & (values.var(axis=0) > 0)).sum() >= 2)
    table = pd.DataFrame(values, columns=[f"f{j}" for j in range(p)])
    table.insert(draw(st.integers(0, p)), "scanner", np.repeat(np.arange(len(sizes)), sizes))
    return table


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=_tables(), parametric=st.booleans(), mean_only=st.booleans(), seed=st.integers(0, 99))
def test_properties(table, parametric, mean_only, seed):
    combat = ComBatHarmonizer(parametric=parametric, mean_only=mean_only)
    out = combat.fit(table).transform(table)
    n_features = table.shape[1] - 1
    assert out.shape == (len(table), n_features)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(combat.transform(table), out)  # deterministic
    order = np.random.default_rng(seed).permutation(len(table))
    np.testing.assert_allclose(combat.transform(table.iloc[order]), out[order], rtol=1e-12)
    # each row is harmonised on its own
    np.testing.assert_allclose(combat.transform(table.iloc[[order[0]]])[0], out[order[0]])
    # a feature constant over the training data passes through unchanged
    constant = table.assign(f0=7.25)
    features = constant.drop(columns="scanner").to_numpy()
    assume(((np.ptp(features, axis=0) > 0) & (features.var(axis=0) > 0)).sum() >= 2)
    np.testing.assert_array_equal(ComBatHarmonizer().fit_transform(constant)[:, 0], 7.25)


def test_a_feature_constant_within_a_batch_gives_finite_values():
    table = _cohort()
    table.loc[table["scanner"] == "S2", "f3"] = 4.0  # constant within S2 only
    table.loc[table["scanner"] == "S1", "f5"] = 0.0
    out = ComBatHarmonizer().fit(table).transform(table)
    assert np.isfinite(out).all()
    # a feature that is pure batch (constant in each batch, different between) is finite too
    table["f7"] = table["scanner"].map({"S1": 1.0, "S2": 2.0, "S3": 5.0})
    out = ComBatHarmonizer(parametric=False).fit(table).transform(table)
    assert np.isfinite(out).all()


def test_numpy_input_with_a_column_position():
    table = _cohort()
    columns = ["f0", "scanner", *[f"f{j}" for j in range(1, 12)]]
    array = table[columns].to_numpy(dtype=object)
    combat = ComBatHarmonizer(batch_column=1).fit(array)
    expected = ComBatHarmonizer().fit_transform(table)
    got = combat.transform(array)
    np.testing.assert_allclose(got[:, 0], expected[:, 0])
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:])
    assert combat.n_features_in_ == 13 and not hasattr(combat, "feature_names_in_")
    assert combat.get_feature_names_out().tolist() == ["x0", *[f"x{j}" for j in range(2, 13)]]
    numeric = np.column_stack([pd.factorize(table["scanner"])[0], table.drop(columns="scanner")])
    np.testing.assert_allclose(ComBatHarmonizer(batch_column=-13).fit_transform(numeric), expected)


def test_max_iter_too_small_warns():
    with pytest.warns(
        ConvergenceWarning, match=r"batches \['S1', 'S2', 'S3'\] did not converge in 1 iterations"
    ):
        ComBatHarmonizer(max_iter=1, tol=1e-12).fit(_cohort())


# --------------------------------------------------------------------------------------------------
# (e) Bad input
# --------------------------------------------------------------------------------------------------
def _set(table, row, column, value):
    table = table.astype({column: object}) if isinstance(value, str) else table.copy()
    table.loc[row, column] = value
    return table


@pytest.mark.parametrize(
    "make_bad, patient, column, match",
    [
        (lambda t: t.drop(columns="scanner"), None, "scanner", "batch column is missing"),
        (lambda t: _set(t, "P007", "f2", np.nan), "P007", "f2", "not a finite number"),
        (lambda t: _set(t, "P011", "f4", np.inf), "P011", "f4", "not a finite number"),
        (
            lambda t: _set(t.astype({"f6": "Float64"}), "P021", "f6", pd.NA),
            "P021",
            "f6",
            "not a finite number",
        ),
        (lambda t: _set(t, "P003", "scanner", None), "P003", "scanner", "no batch value"),
        (lambda t: _set(t, "P005", "f1", "high"), "P005", "f1", "'high' is not a number"),
        (
            lambda t: t.assign(scanner=[f"S{i}" for i in range(len(t))]),
            "P000",
            "scanner",
            "every batch has a single sample",
        ),
    ],
    ids=["missing-batch-column", "nan", "inf", "nullable-na", "nan-batch", "non-numeric", "single"],
)
def test_bad_input_names_the_patient_and_the_column(make_bad, patient, column, match):
    bad = make_bad(_cohort())
    with pytest.raises(CohortError, match=match) as info:
        ComBatHarmonizer().fit(bad)
    assert info.value.patient_id == patient and info.value.column == column
    if patient is not None:
        assert repr(patient) in str(info.value)
    assert repr(column) in str(info.value)


def test_a_scanner_alone_in_training_gets_the_pooled_estimates_with_a_warning():
    table = _cohort()
    alone = _set(table, "P059", "scanner", "S7")  # the last patient of S3 on a scanner of its own
    with pytest.warns(UnseenBatchWarning, match=r"\['S7'\].*single sample.*'P059'"):
        combat = ComBatHarmonizer().fit(alone)
    assert combat.batches_.tolist() == ["S1", "S2", "S3"] and combat.pooled_batches_.tolist() == [
        "S7"
    ]
    # The estimates are those of the other patients alone ...
    reference = ComBatHarmonizer().fit(table.drop(index="P059"))
    for name in ("grand_mean_", "var_pooled_", "gamma_star_", "delta_star_", "gamma_pooled_"):
        np.testing.assert_allclose(getattr(combat, name), getattr(reference, name), rtol=1e-12)
    # ... and its patient is harmonised with the pooled ones, without a second warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseenBatchWarning)
        out = combat.transform(alone.loc[["P059"]])
    z = (table.loc[["P059"]].drop(columns="scanner").to_numpy() - combat.grand_mean_) / np.sqrt(
        combat.var_pooled_
    )
    expected = (z - combat.gamma_pooled_) / np.sqrt(combat.delta_pooled_) * np.sqrt(
        combat.var_pooled_
    ) + combat.grand_mean_
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert ComBatHarmonizer().fit(table).pooled_batches_.size == 0


def test_bad_input_at_transform_names_the_patient_and_the_column():
    combat = ComBatHarmonizer().fit(_cohort())
    with pytest.raises(CohortError, match="patient 'P012', column 'f9': nan is not a finite"):
        combat.transform(_set(_cohort(), "P012", "f9", np.nan))
    with pytest.raises(CohortError, match="column 'scanner': the batch column is missing"):
        combat.transform(_cohort().drop(columns="scanner"))
    with pytest.raises(ValueError, match="feature names"):
        combat.transform(_cohort().rename(columns={"f3": "other"}))
    with pytest.raises(CohortError, match="patient 4, column 2"):
        array = _cohort().to_numpy(dtype=object)
        array[4, 2] = np.nan
        ComBatHarmonizer(batch_column=12).fit(array)


@pytest.mark.parametrize(
    "X, kwargs, error, match",
    [
        (np.zeros((4, 3)), {}, ValueError, "column position of the array"),
        (np.zeros((4, 3)), {"batch_column": 3}, ValueError, "column position"),
        (np.zeros(4), {"batch_column": 0}, ValueError, "2-dimensional|2D"),
        (None, {"eps": 0.0}, InvalidParameterError, "eps"),
        (None, {"max_iter": 0}, InvalidParameterError, "max_iter"),
        (None, {"batch_column": None}, InvalidParameterError, "batch_column"),
        (None, {"parametric": "yes"}, InvalidParameterError, "parametric"),
    ],
)
def test_bad_parameters(X, kwargs, error, match):
    X = _cohort() if X is None else X
    with pytest.raises(error, match=match):
        ComBatHarmonizer(**kwargs).fit(X)


def test_too_few_varying_features():
    table = _cohort(n_features=2).assign(f1=3.0)
    with pytest.raises(ValueError, match="at least 2 features must vary"):
        ComBatHarmonizer().fit(table)


# --------------------------------------------------------------------------------------------------
# (f) scikit-learn's contract
# --------------------------------------------------------------------------------------------------
def test_estimator_checks_on_a_table():
    table = _cohort()
    check_image_estimator(ComBatHarmonizer(), table)
    check_image_estimator(ComBatHarmonizer(parametric=False, mean_only=True), table)


def test_clone_params_and_pickle():
    combat = ComBatHarmonizer("site", parametric=False, eps=1e-6, tol=1e-5, max_iter=50)
    assert clone(combat).get_params() == combat.get_params()
    assert combat.get_params()["batch_column"] == "site"
    table = _cohort(scanner="site")
    combat.fit(table)
    loaded = pickle.loads(pickle.dumps(combat))
    np.testing.assert_array_equal(loaded.transform(table), combat.transform(table))
    with pytest.raises(NotFittedError):
        ComBatHarmonizer().transform(table)


def test_set_output_and_feature_names():
    table = _cohort()
    table.insert(0, "scanner", table.pop("scanner"))  # the batch column may be anywhere
    combat = ComBatHarmonizer().set_output(transform="pandas").fit(table)
    out = combat.transform(table)
    assert isinstance(out, pd.DataFrame)
    assert out.index.equals(table.index)
    assert out.columns.tolist() == [f"f{j}" for j in range(12)]
    assert combat.feature_names_in_.tolist() == table.columns.tolist()
    assert combat.n_features_in_ == 13
    assert combat.get_feature_names_out(table.columns).tolist() == out.columns.tolist()
    with pytest.raises(ValueError, match="input_features"):
        combat.get_feature_names_out(["a"] * 13)


def test_in_a_pipeline():
    table = _cohort(n_per_batch=(30, 30, 30))
    y = np.arange(len(table)) % 2
    model = make_pipeline(ComBatHarmonizer(), LogisticRegression()).fit(table, y)
    assert model.predict_proba(table).shape == (90, 2)
    assert model[:-1].get_feature_names_out().tolist() == [f"f{j}" for j in range(12)]
