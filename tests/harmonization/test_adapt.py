"""Tests of p53radiomics.harmonization.adapt_to_new_batches and of adapt_harmonisation.

A new batch is made as an affine transform of samples drawn like a training batch: adapting must
map it back onto what the harmoniser makes of that training batch, where the pooled estimates,
or a harmoniser fitted on the new site alone, leave it shifted.
"""

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import NotFittedError

from p53radiomics import ComBatHarmonizer
from p53radiomics.exceptions import CohortError, UnseenBatchWarning
from p53radiomics.harmonization import adapt_to_new_batches

N_FEATURES = 10
ESTIMATES = ("batches_", "batch_counts_", "gamma_star_", "delta_star_", "gamma_pooled_")


class _Scanners:
    """Samples of one patient population (feature j ~ N(mu_j, sd_j)) seen through scanners, each
    with its own additive and multiplicative effect per feature, fixed by its name."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.mu = self.rng.normal(0, 10, N_FEATURES)
        self.sd = self.rng.uniform(0.5, 5, N_FEATURES)
        self.effects = {}

    def draw(self, scanner, n, *, shift=0.0, scale=1.0, first=0):
        """`n` patients on `scanner`, then ``* scale + shift`` (per feature) on top of it."""
        if scanner not in self.effects:
            self.effects[scanner] = (
                self.rng.normal(0, 1, N_FEATURES) * self.sd,
                self.rng.uniform(0.6, 1.6, N_FEATURES),
            )
        a, b = self.effects[scanner]
        clean = self.rng.normal(size=(n, N_FEATURES)) * self.sd + self.mu
        values = ((clean - self.mu) * b + self.mu + a) * scale + shift
        table = pd.DataFrame(
            values,
            columns=[f"f{j}" for j in range(N_FEATURES)],
            index=[f"{scanner}-{first + i:03d}" for i in range(n)],
        )
        return table.assign(scanner=scanner)

    def site(self, scanners, n, **kwargs):
        return pd.concat([self.draw(s, n, **kwargs) for s in scanners])


@pytest.fixture
def scanners():
    return _Scanners(seed=0)


@pytest.fixture
def fitted(scanners):
    """(harmonizer fitted on S1, S2, S3, its training table)."""
    train = scanners.site(["S1", "S2", "S3"], 40)
    return ComBatHarmonizer().set_output(transform="pandas").fit(train), train


def _pooled(harmonizer, X):
    with pytest.warns(UnseenBatchWarning, match="not seen in fit"):
        return harmonizer.transform(X)


def _gap(harmonised, combat):
    """Per feature, the distance of harmonised data from the training reference, the frame that
    ComBat maps every training batch onto (`grand_mean_`, SD ``sqrt(var_pooled_)``): |mean
    difference| in reference SDs, and |log| of the ratio of the SDs."""
    sd = np.sqrt(combat.var_pooled_)
    return (
        np.abs(harmonised.mean().to_numpy() - combat.grand_mean_) / sd,
        np.abs(np.log(harmonised.std().to_numpy() / sd)),
    )


# --------------------------------------------------------------------------------------------------
# (a) What adapting does: a new batch onto the training reference
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs", [{}, {"parametric": False}, {"mean_only": True}], ids=["parametric", "np", "mean"]
)
def test_a_transformed_batch_is_mapped_back_onto_the_training_reference(scanners, kwargs):
    train = scanners.site(["S1", "S2", "S3"], 40)
    combat = ComBatHarmonizer(**kwargs).set_output(transform="pandas").fit(train)
    shift = scanners.rng.normal(0, 3, N_FEATURES) * scanners.sd
    scale = scanners.rng.uniform(1.5, 3, N_FEATURES)

    def new_scanner(n, first):  # patients drawn as S1's were, seen through a new scanner N1
        return scanners.draw("S1", n, first=first, shift=shift, scale=scale).assign(scanner="N1")

    adapted = adapt_to_new_batches(combat, new_scanner(100, 0))
    held_out = new_scanner(200, 100)  # other patients of the new scanner
    mean_gap, sd_gap = _gap(adapted.transform(held_out), combat)
    pooled_mean_gap, pooled_sd_gap = _gap(_pooled(combat, held_out), combat)
    assert np.median(pooled_mean_gap) > 1.0, pooled_mean_gap  # the pooled estimates: shifted
    assert np.median(mean_gap) < 0.25 * np.median(pooled_mean_gap), mean_gap
    if kwargs.get("mean_only"):  # the scale is left, for the new batch as for the training ones
        assert np.median(sd_gap) > 0.3
    else:
        assert np.median(sd_gap) < 0.25 * np.median(pooled_sd_gap), sd_gap
    if not kwargs:
        # Parametric ComBat on 100 patients: as close as a training scanner's held-out patients
        # get (0.3 SD at most here). The other two shrink each estimate harder (neuroCombat's
        # mean_only prior; non-parametric estimates from the other features only), a training
        # batch's as much.
        assert mean_gap.max() < 0.35 and np.median(mean_gap) < 0.15, mean_gap
        assert sd_gap.max() < 0.25 and np.median(sd_gap) < 0.1, sd_gap


def test_the_fitted_state_gains_the_new_batches(fitted, scanners):
    combat, train = fitted
    new = scanners.site(["N2", "N1"], 30)
    adapted = adapt_to_new_batches(combat, new)
    assert adapted is not combat and type(adapted) is ComBatHarmonizer
    assert adapted.get_params() == combat.get_params()
    assert adapted.batches_.tolist() == ["S1", "S2", "S3", "N1", "N2"]
    assert adapted.adapted_batches_.tolist() == ["N1", "N2"]
    assert adapted.batch_counts_.tolist() == [40, 40, 40, 30, 30]
    assert adapted.gamma_star_.shape == adapted.delta_star_.shape == (5, N_FEATURES)
    # the training batches' estimates, the standardisation and the pooled estimates stay
    for name in ("grand_mean_", "var_pooled_", "gamma_pooled_", "delta_pooled_"):
        np.testing.assert_array_equal(getattr(adapted, name), getattr(combat, name))
    np.testing.assert_array_equal(adapted.gamma_star_[:3], combat.gamma_star_)
    np.testing.assert_array_equal(adapted.transform(train), combat.transform(train))
    # a third unseen scanner still gets the pooled (training) estimates, with the warning
    third = scanners.draw("N3", 5)
    np.testing.assert_array_equal(_pooled(adapted, third), _pooled(combat, third))
    # the adapted batches are harmonised without a warning, also in a table with training ones
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseenBatchWarning)
        both = adapted.transform(pd.concat([train, new]))
    assert both.shape == (len(train) + len(new), N_FEATURES) and np.isfinite(both).all(None)
    assert adapted.get_feature_names_out().tolist() == [f"f{j}" for j in range(N_FEATURES)]
    assert isinstance(both, pd.DataFrame)  # set_output is kept


def test_the_input_harmonizer_is_unchanged(fitted, scanners):
    combat, train = fitted
    new = scanners.site(["N1"], 30)
    before = _pooled(combat, pd.concat([train, new]))
    state = {name: getattr(combat, name).copy() for name in ESTIMATES}
    new_copy = new.copy()
    adapted = adapt_to_new_batches(combat, new)
    np.testing.assert_array_equal(_pooled(combat, pd.concat([train, new])), before)
    for name, value in state.items():
        np.testing.assert_array_equal(getattr(combat, name), value)
    assert combat.adapted_batches_.size == 0
    pd.testing.assert_frame_equal(new, new_copy)  # nor its input
    adapted.gamma_star_[:] = 0.0  # a deep copy: nothing shared
    np.testing.assert_array_equal(combat.gamma_star_, state["gamma_star_"])


def test_adapting_a_copy_of_a_training_batch_gives_its_estimates(fitted):
    """The oracle: a training batch's own samples under a new name get that batch's estimates
    (the same standardisation, the same empirical-Bayes solution as fit)."""
    combat, train = fitted
    for kwargs in ({}, {"parametric": False}, {"mean_only": True}):
        combat = ComBatHarmonizer(**kwargs).fit(train)
        copy_of_s2 = train[train["scanner"] == "S2"].assign(scanner="N2")
        adapted = adapt_to_new_batches(combat, copy_of_s2)
        np.testing.assert_allclose(adapted.gamma_star_[-1], combat.gamma_star_[1], rtol=1e-6)
        np.testing.assert_allclose(adapted.delta_star_[-1], combat.delta_star_[1], rtol=1e-6)


def test_a_fresh_fit_on_the_new_site_keeps_a_site_wide_shift(fitted, scanners):
    """The pitfall: ComBat fitted on the external site alone centres it on its own grand mean, so a
    shift that every external scanner shares (the site's protocol) is not removed."""
    combat, train = fitted
    site_shift = scanners.rng.choice([-3, 3], N_FEATURES) * scanners.sd  # every external scanner
    external = pd.concat(
        [scanners.draw(s, 60, first=100, shift=site_shift).assign(scanner=f"E{s[1]}")
         for s in ("S1", "S2", "S3")]
    )  # fmt: skip
    fresh = ComBatHarmonizer().set_output(transform="pandas").fit(external)
    fresh_gap, _ = _gap(fresh.transform(external), combat)
    adapted_gap, _ = _gap(adapt_to_new_batches(combat, external).transform(external), combat)
    assert fresh_gap.min() > 1.5, fresh_gap  # about the site's 3 SDs, on every feature
    assert adapted_gap.max() < 0.2 * fresh_gap.min(), adapted_gap


def test_a_pooled_training_batch_can_be_adapted(scanners):
    train = pd.concat([scanners.site(["S1", "S2"], 20), scanners.draw("S9", 1)])
    with pytest.warns(UnseenBatchWarning, match="single sample"):
        combat = ComBatHarmonizer().fit(train)
    assert combat.pooled_batches_.tolist() == ["S9"]
    adapted = adapt_to_new_batches(combat, scanners.draw("S9", 20, first=1))
    assert adapted.pooled_batches_.size == 0 and adapted.adapted_batches_.tolist() == ["S9"]
    assert combat.pooled_batches_.tolist() == ["S9"]


def test_no_labels():
    assert list(inspect.signature(adapt_to_new_batches).parameters) == ["harmonizer", "X_new"]


# --------------------------------------------------------------------------------------------------
# (b) Refusals
# --------------------------------------------------------------------------------------------------
def test_a_batch_with_estimates_is_refused(fitted, scanners):
    combat, _ = fitted
    new = pd.concat([scanners.draw("N1", 10), scanners.draw("S2", 10, first=50)])
    with pytest.raises(CohortError, match=r"\['S2'\] have estimates already") as info:
        adapt_to_new_batches(combat, new)
    assert isinstance(info.value, ValueError)
    assert info.value.column == "scanner" and info.value.patient_id == "S2-050"
    assert "never re-estimates a training batch" in str(info.value)
    adapted = adapt_to_new_batches(combat, scanners.draw("N1", 10))
    with pytest.raises(CohortError, match=r"\['N1'\] have estimates already"):
        adapt_to_new_batches(adapted, scanners.draw("N1", 10, first=10))  # adapted already


def test_a_new_batch_with_a_single_sample_is_refused(fitted, scanners):
    combat, _ = fitted
    new = pd.concat([scanners.draw("N1", 10), scanners.draw("N2", 1), scanners.draw("N3", 1)])
    with pytest.raises(CohortError, match=r"\['N2', 'N3'\] have a single sample") as info:
        adapt_to_new_batches(combat, new)
    assert info.value.column == "scanner" and info.value.patient_id == "N2-000"
    assert "pooled estimates" in str(info.value)


def test_bad_input_names_the_patient_and_the_column(fitted, scanners):
    combat, _ = fitted
    new = scanners.draw("N1", 10)
    bad = new.copy()
    bad.loc["N1-004", "f3"] = np.nan
    with pytest.raises(CohortError, match="patient 'N1-004', column 'f3': nan is not a finite"):
        adapt_to_new_batches(combat, bad)
    bad = new.astype({"scanner": object})
    bad.loc["N1-002", "scanner"] = None
    with pytest.raises(CohortError, match="patient 'N1-002', column 'scanner': no batch value"):
        adapt_to_new_batches(combat, bad)
    with pytest.raises(CohortError, match="column 'scanner': the batch column is missing"):
        adapt_to_new_batches(combat, new.drop(columns="scanner"))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.rename(columns={"f3": "other"}), "feature names"),
        (lambda t: t.assign(extra=1.0), "feature names"),
        (lambda t: t.drop(columns="f9"), "feature names"),
    ],
    ids=["renamed", "extra", "missing"],
)
def test_other_columns_than_fit_are_refused(fitted, scanners, edit, match):
    combat, _ = fitted
    with pytest.raises(ValueError, match=match):
        adapt_to_new_batches(combat, edit(scanners.draw("N1", 10)))


def test_an_unfitted_or_other_estimator_is_refused(scanners):
    new = scanners.draw("N1", 10)
    with pytest.raises(NotFittedError):
        adapt_to_new_batches(ComBatHarmonizer(), new)
    with pytest.raises(TypeError, match="must be a ComBatHarmonizer, got StandardScaler"):
        from sklearn.preprocessing import StandardScaler

        adapt_to_new_batches(StandardScaler(), new)


# --------------------------------------------------------------------------------------------------
# (c) Properties
# --------------------------------------------------------------------------------------------------
@st.composite
def _study(draw):
    """A training table (2 to 4 batches of 2 to 7 samples, 2 to 5 features, the batch column
    anywhere) and two new batches made of its rows under per-feature affine transforms."""
    sizes = draw(st.lists(st.integers(2, 7), min_size=2, max_size=4))
    n, p = sum(sizes), draw(st.integers(2, 5))
    values = draw(arrays(np.float64, (n, p), elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
    assume(((np.ptp(values, axis=0) > 0) & (values.var(axis=0) > 0)).sum() >= 2)
    columns = [f"f{j}" for j in range(p)]
    train = pd.DataFrame(values, columns=columns, index=[f"T{i}" for i in range(n)])
    sd = values.std(axis=0)  # shifts on the scale of each feature (0 for a constant one)
    new = []
    for k in range(2):
        rows = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=8))
        shift = draw(arrays(np.float64, p, elements=st.floats(-5, 5))) * sd
        scale = draw(arrays(np.float64, p, elements=st.floats(0.25, 4)))
        batch = pd.DataFrame(values[rows] * scale + shift, columns=columns)
        new.append(batch.set_axis([f"N{k}-{i}" for i in range(len(rows))]).assign(scanner=100 + k))
    position = draw(st.integers(0, p))
    train.insert(position, "scanner", np.repeat(np.arange(len(sizes)), sizes))
    new = pd.concat(new)
    return train, new[train.columns]


def _estimates(harmonizer):
    return np.vstack([harmonizer.gamma_star_, harmonizer.delta_star_])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(study=_study(), parametric=st.booleans(), mean_only=st.booleans(), seed=st.integers(0, 99))
def test_properties(study, parametric, mean_only, seed):
    train, new = study
    combat = ComBatHarmonizer(parametric=parametric, mean_only=mean_only, tol=1e-10).fit(train)
    adapted = adapt_to_new_batches(combat, new)
    assert adapted.batches_.tolist() == [*combat.batches_.tolist(), 100, 101]
    out = adapted.transform(new)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(adapted.transform(train), combat.transform(train))
    # invariant to the order of the rows
    order = np.random.default_rng(seed).permutation(len(new))
    shuffled = adapt_to_new_batches(combat, new.iloc[order])
    np.testing.assert_allclose(_estimates(shuffled), _estimates(adapted), rtol=1e-6, atol=1e-12)
    # each new batch is estimated on its own: both at once, or one after the other
    first, second = new[new["scanner"] == 100], new[new["scanner"] == 101]
    in_turn = adapt_to_new_batches(adapt_to_new_batches(combat, second), first)
    assert in_turn.batches_.tolist()[-2:] == [101, 100]
    k = len(combat.batches_)
    for mine, theirs in ((k, k + 1), (k + 1, k)):
        np.testing.assert_allclose(
            in_turn.gamma_star_[mine], adapted.gamma_star_[theirs], rtol=1e-6, atol=1e-12
        )
        np.testing.assert_allclose(
            in_turn.delta_star_[mine], adapted.delta_star_[theirs], rtol=1e-6, atol=1e-12
        )
    # a training batch's rows under a new name get that batch's estimates
    renamed = train[train["scanner"] == 0].assign(scanner=200)
    again = adapt_to_new_batches(combat, renamed)
    np.testing.assert_allclose(again.gamma_star_[-1], combat.gamma_star_[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(again.delta_star_[-1], combat.delta_star_[0], rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# (d) On a fitted combined model
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """A 12-patient development cohort on 3 scanners and a 6-patient external one on the 3
    scanners of EXTERNAL_SCANNERS (2 patients each), coarse voxels."""
    from p53radiomics.datasets import EXTERNAL_SCANNERS, make_synthetic_cohort

    folder = tmp_path_factory.mktemp("adapt_cohorts")
    X, y = make_synthetic_cohort(folder / "dev", n_patients=12, voxel_scale=3.0, n_scanners=3)
    X_ext, _ = make_synthetic_cohort(
        folder / "ext", n_patients=6, random_state=1, voxel_scale=3.0, scanners=EXTERNAL_SCANNERS
    )
    return X, y, X_ext


def test_adapt_harmonisation_of_a_fitted_model(cohorts, tiny_paper_pipeline, tmp_path):
    from p53radiomics.pipeline import adapt_harmonisation, fitted_branch, pooled_harmonisation

    X, y, X_ext = cohorts
    assert X_ext["scanner"].value_counts().to_dict() == {"E1": 2, "E2": 2, "E3": 2}
    make = tiny_paper_pipeline
    model = make(["ltd", "rim_aphe"], tmp_path, harmonize=True).set_params(fusion__deep="drop")
    with warnings.catch_warnings():  # the stacking's folds leave a scanner alone at times
        warnings.simplefilter("ignore", UnseenBatchWarning)
        model.fit(X, y)
    adapted = adapt_harmonisation(model, X_ext)
    harmonizer = fitted_branch(adapted, "radiomics").named_steps["harmonize"]
    original = fitted_branch(model, "radiomics").named_steps["harmonize"]
    assert harmonizer.adapted_batches_.tolist() == ["E1", "E2", "E3"]
    assert harmonizer.batches_.tolist() == [*original.batches_.tolist(), "E1", "E2", "E3"]
    assert original.adapted_batches_.size == 0 and "E1" not in original.batches_.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseenBatchWarning)
        proba = adapted.predict_proba(X_ext)
    with pytest.warns(UnseenBatchWarning, match=r"\['E1', 'E2', 'E3'\]"):
        pooled = model.predict_proba(X_ext)
    assert proba.shape == pooled.shape == (6, 2) and np.isfinite(proba).all()
    assert pooled_harmonisation(adapted, X_ext).empty
    assert len(pooled_harmonisation(model, X_ext)) == 6
    # the training scanners' patients are scored as before; the fitted parts are shared
    np.testing.assert_allclose(adapted.predict_proba(X), model.predict_proba(X))
    fusion, new_fusion = model.named_steps["fusion"], adapted.named_steps["fusion"]
    assert new_fusion.final_estimator_ is fusion.final_estimator_
    assert new_fusion.named_estimators_["clinical"] is fusion.named_estimators_["clinical"]
    with pytest.raises(ValueError, match=r"\['E1', 'E2', 'E3'\].*has estimates.*nothing to adapt"):
        adapt_harmonisation(adapted, X_ext)
    plain = make(["ltd"], tmp_path).set_params(fusion__radiomics="drop", fusion__deep="drop")
    with pytest.raises(ValueError, match="no harmonisation step.*harmonize=True"):
        adapt_harmonisation(plain.fit(X, y), X_ext)
