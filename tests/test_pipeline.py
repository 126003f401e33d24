"""The study's pipeline end to end on a small synthetic cohort: step names, a fit that predicts,
persistence into a fresh CPU-only process, and each heavy step run once per case in a grid search."""

import logging
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from p53radiomics import ComBatHarmonizer, make_paper_pipeline
from p53radiomics.exceptions import UnseenBatchWarning
from p53radiomics.pipeline import branch_scores, fitted_clinical_columns, make_radiomics_branch

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("test_pipeline")

CLINICAL = ["ltd", "rim_aphe", "age", "gender", "washout"]


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_paper_pipeline):
    """``tiny_pipeline(cache_dir, **settings)``: the study's pipeline with tiny settings on
    :data:`CLINICAL` (tests/conftest.py)."""
    return lambda cache_dir, **settings: tiny_paper_pipeline(CLINICAL, cache_dir, **settings)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from p53radiomics.datasets import make_synthetic_cohort

    return make_synthetic_cohort(
        tmp_path_factory.mktemp("cohort"), n_patients=16, random_state=2, voxel_scale=2.5
    )


@pytest.fixture(scope="module")
def fitted(cohort, tiny_pipeline, tmp_path_factory):
    X, y = cohort
    model = tiny_pipeline(tmp_path_factory.mktemp("cache"))
    return model.fit(X, y)


def test_step_names_follow_the_design():
    model = make_paper_pipeline(["ltd", "rim_aphe"])
    assert [n for n, _ in model.steps] == ["preprocess", "fusion"]
    branches = dict(model.named_steps["fusion"].estimators)
    assert list(branches) == ["clinical", "radiomics", "deep"]
    assert [n for n, _ in branches["clinical"].steps] == ["encode", "select", "classifier"]
    assert [n for n, _ in branches["radiomics"].steps] == [
        "extract",
        "scale",
        "decorrelate",
        "select",
        "classifier",
    ]
    names = [n for n, _ in branches["deep"].steps]
    assert [n for n in names if n != "scale"] == ["crop", "cnn", "select", "classifier"]
    params = model.get_params()
    assert (
        params["fusion__deep__cnn__backbone"] == "resnet101"
        and params["fusion__deep__cnn__mode"] == "ff"
    )
    model.set_params(fusion__deep__cnn__backbone="densenet121", fusion__deep__cnn__mode="mc")
    assert model.named_steps["fusion"].estimators[2][1].named_steps["cnn"].backbone == "densenet121"


def test_harmonize_adds_a_combat_step_to_the_radiomics_branch():
    model = make_paper_pipeline(["ltd"], harmonize=True, batch_column="site")
    radiomics = dict(model.named_steps["fusion"].estimators)["radiomics"]
    assert [n for n, _ in radiomics.steps] == [
        "extract",
        "harmonize",
        "scale",
        "decorrelate",
        "select",
        "classifier",
    ]
    params = model.get_params()
    assert params["fusion__radiomics__harmonize__batch_column"] == "site"
    assert params["fusion__radiomics__extract__passthrough"] == ("site",)
    assert isinstance(radiomics.named_steps["harmonize"], ComBatHarmonizer)
    plain = dict(make_paper_pipeline(["ltd"]).named_steps["fusion"].estimators)["radiomics"]
    assert "harmonize" not in plain.named_steps
    assert plain.named_steps["extract"].passthrough == ()


def test_harmonised_radiomics_branch_fits_on_the_training_rows_only(
    tmp_path, tiny_pipeline, tiny_radiomics_params
):
    from p53radiomics.datasets import make_synthetic_cohort

    X, y = make_synthetic_cohort(
        tmp_path / "cohort", n_patients=14, random_state=3, voxel_scale=2.5, n_scanners=2
    )
    preprocess = tiny_pipeline(tmp_path / "cache").named_steps["preprocess"]
    Xp = preprocess.transform(X)
    branch = make_radiomics_branch(
        params=tiny_radiomics_params, cache_dir=str(tmp_path / "cache"), cv=2, random_state=0,
        harmonize=True,
    )  # fmt: skip
    held_out = X.groupby("scanner").head(2).index  # each scanner keeps >= 2 training patients
    train = X.index.difference(held_out)
    assert X.loc[train, "scanner"].value_counts().min() >= 2
    branch.fit(Xp.loc[train], y.loc[train])
    proba = branch.predict_proba(Xp)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    harmonizer = branch.named_steps["harmonize"]
    assert harmonizer.batches_.tolist() == sorted(X.loc[train, "scanner"].unique())
    assert harmonizer.batch_counts_.sum() == len(train)  # learnt on the training rows only
    n_features = branch.named_steps["extract"].get_feature_names_out().size - 1
    assert harmonizer.n_features_in_ == n_features + 1
    assert harmonizer.get_feature_names_out().tolist()[-1] != "scanner"
    # a scanner the branch never saw: pooled estimates, with a warning that names it
    with pytest.warns(UnseenBatchWarning, match="S9"):
        unseen = branch.predict_proba(Xp.assign(scanner="S9"))
    assert np.isfinite(unseen).all()
    # A grid switches harmonisation off with the step and the scanner column it needed (the user
    # guide's grid); the features are then the unharmonised ones.
    off = clone(branch).set_params(harmonize="passthrough", extract__passthrough=())
    off.fit(Xp.loc[train], y.loc[train])
    assert off.named_steps["scale"].n_features_in_ == n_features
    plain = make_radiomics_branch(
        params=tiny_radiomics_params, cache_dir=str(tmp_path / "cache"), cv=2, random_state=0
    ).fit(Xp.loc[train], y.loc[train])
    np.testing.assert_allclose(off.predict_proba(Xp), plain.predict_proba(Xp))


def test_fit_predicts_probabilities_and_branch_scores(cohort, fitted):
    X, y = cohort
    proba = fitted.predict_proba(X)
    assert (
        proba.shape == (len(X), 2)
        and np.isfinite(proba).all()
        and np.allclose(proba.sum(axis=1), 1)
    )
    scores = (
        fitted.named_steps["fusion"]
        .set_output(transform="pandas")
        .transform(fitted.named_steps["preprocess"].transform(X))
    )
    assert list(scores.columns) == ["clinical", "radiomics", "deep"] and scores.index.equals(
        X.index
    )
    assert fitted.score(X, y) >= 0.5
    # branch_scores: each branch's probability of the positive class, and the fused one
    by_branch, Xp = branch_scores(fitted, X, return_preprocessed=True)
    assert list(by_branch) == ["clinical", "radiomics", "deep", "combined"]
    np.testing.assert_allclose(by_branch["combined"], proba[:, 1])
    fusion = fitted.named_steps["fusion"]
    for name in ("clinical", "radiomics", "deep"):
        expected = fusion.named_estimators_[name].predict_proba(Xp)[:, 1]
        np.testing.assert_allclose(by_branch[name], expected)
    assert sorted(fitted_clinical_columns(fitted)) == sorted(CLINICAL)


def test_pickled_pipeline_predicts_the_same_in_a_fresh_cpu_only_process(cohort, fitted, tmp_path):
    X, _ = cohort
    expected = fitted.predict_proba(X)[:, 1]
    joblib.dump(fitted, tmp_path / "model.joblib")
    X.to_pickle(tmp_path / "X.pkl")
    script = textwrap.dedent(
        f"""
        import os
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        import joblib, numpy as np, pandas as pd
        model = joblib.load({str(tmp_path / "model.joblib")!r})
        X = pd.read_pickle({str(tmp_path / "X.pkl")!r})
        np.save({str(tmp_path / "p.npy")!r}, model.predict_proba(X)[:, 1])
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-6, atol=1e-7)


def _count(records, step):
    import re

    pattern = re.compile(
        rf"{step}: (\d+) \(case, phase\) pairs to (?:compute|extract), (\d+) read from the cache"
    )
    computed = read = 0
    for record in records:
        match = pattern.match(record.getMessage())
        if match:
            computed += int(match.group(1))
            read += int(match.group(2))
    return computed, read


def test_grid_search_preprocesses_and_extracts_each_case_once(
    cohort, tiny_pipeline, tmp_path, caplog
):
    # What is counted is the image steps' work, so the CNN branch is dropped and the grid is over
    # a cheap setting downstream of the extraction: every fit and score asks again for every case.
    X, y = cohort
    model = tiny_pipeline(tmp_path / "cache").set_params(fusion__deep="drop")
    grid = GridSearchCV(
        model,
        {"fusion__radiomics__decorrelate__threshold": [0.8, 0.9]},
        cv=3,  # 16 patients: fewer folds leave the inner LASSO one patient of a class
        scoring="roc_auc",
        error_score="raise",
        refit=False,
    )
    with caplog.at_level(logging.DEBUG, logger="p53radiomics"):
        grid.fit(X, y)
    pairs = len(X) * 3
    n4_computed, n4_read = _count(caplog.records, "N4Resampler")
    rad_computed, rad_read = _count(caplog.records, "RadiomicsExtractor")
    assert n4_computed == pairs and rad_computed == pairs  # each (case, phase) once ...
    assert n4_read >= 3 * pairs and rad_read >= 3 * pairs  # ... though asked for many times
    assert (
        len(grid.cv_results_["params"]) == 2
        and np.isfinite(grid.cv_results_["mean_test_score"]).all()
    )


def test_deep_branch_takes_2_5d_crops_and_grid_searches_their_depth_alone(cohort, fitted):
    from p53radiomics.pipeline import make_deep_branch

    X, y = cohort
    Xp = fitted.named_steps["preprocess"].transform(X)
    branch = make_deep_branch(
        backbone="resnet18",
        mode="ff",
        crop_size=32,
        context_slices=1,
        max_epochs=1,
        batch_size=16,
        n_components=2,
        cv=2,
        device="cpu",
        random_state=0,
    )
    assert branch.named_steps["crop"].transform(Xp.iloc[:2]).shape == (2, 3 * 3, 32, 32)
    cnn = branch.fit(Xp, y).named_steps["cnn"]
    # One FF branch per phase, each on its phase's three slices.
    assert (cnn.n_phases_, cnn.channels_per_phase_) == (3, 3)
    assert branch.predict_proba(Xp).shape == (len(X), 2)
    # Only the cropper's depth changes; the CNN follows from the number of phases.
    cnn = branch.set_params(crop__context_slices=0).fit(Xp, y).named_steps["cnn"]
    assert (cnn.n_phases_, cnn.channels_per_phase_) == (3, 1)


def test_the_deep_settings_have_one_source():
    import inspect

    from p53radiomics.pipeline import DEEP_BRANCH_DEFAULTS, make_deep_branch

    for builder in (make_deep_branch, make_paper_pipeline):
        defaults = {
            name: p.default
            for name, p in inspect.signature(builder).parameters.items()
            if name in DEEP_BRANCH_DEFAULTS
        }
        assert defaults == dict(DEEP_BRANCH_DEFAULTS), builder.__name__
    cnn = make_paper_pipeline(["ltd"]).get_params()["fusion__deep__cnn"]
    assert (cnn.backbone, cnn.mode, cnn.n_components, cnn.max_epochs, cnn.batch_size) == (
        "resnet101",
        "ff",
        8,
        20,
        32,
    )


def test_thresholds_are_chosen_once_by_branch_and_read_from_older_models(cohort, fitted):
    import copy

    from p53radiomics.metrics import youden_threshold
    from p53radiomics.pipeline import MODEL_NAMES, decision_thresholds, fit_thresholds

    X, y = cohort
    model = copy.copy(fitted)  # the module's fixture keeps no thresholds
    assert decision_thresholds(model) is None
    scores = branch_scores(model, X)
    thresholds = fit_thresholds(model, X, y)
    assert list(thresholds) == ["clinical", "radiomics", "deep", "combined"]
    assert thresholds == {k: youden_threshold(y, v) for k, v in scores.items()}
    assert decision_thresholds(model) == thresholds
    # a model pickled by an earlier version keyed them by display name: read as the same
    older = copy.copy(fitted)
    older.p53radiomics_thresholds_ = {MODEL_NAMES[k]: v for k, v in thresholds.items()}
    assert decision_thresholds(older) == thresholds
    older.p53radiomics_thresholds_ = {"Combined model": 0.5, "Deep model": 0.4}
    with pytest.raises(ValueError, match="unknown models \\['Deep model'\\]"):
        decision_thresholds(older)


def test_use_cache_moves_both_caches_and_shares_every_fitted_part(cohort, fitted, tmp_path):
    from p53radiomics.pipeline import fitted_branch, pooled_harmonisation, use_cache

    X, _ = cohort
    before = fitted.get_params()["preprocess__cache_dir"]
    moved = use_cache(fitted, tmp_path / "elsewhere")
    radiomics = fitted_branch(moved, "radiomics")
    assert moved.named_steps["preprocess"].cache_dir == str(tmp_path / "elsewhere")
    assert radiomics.named_steps["extract"].cache_dir == str(tmp_path / "elsewhere")
    # the model given is unchanged, and the copy shares its fitted parts
    assert fitted.named_steps["preprocess"].cache_dir == before
    assert fitted_branch(fitted, "radiomics").named_steps["extract"].cache_dir == before
    # the unfitted steps a clone or a refit starts from cache there too (and only in the copy)
    key = "fusion__radiomics__extract__cache_dir"
    assert moved.get_params()[key] == clone(moved).get_params()[key] == str(tmp_path / "elsewhere")
    assert fitted.get_params()[key] == before
    assert fitted_branch(moved, "deep") is fitted_branch(fitted, "deep")
    assert (
        radiomics.named_steps["classifier"]
        is (fitted_branch(fitted, "radiomics").named_steps["classifier"])
    )
    np.testing.assert_allclose(
        moved.predict_proba(X.iloc[:3]), fitted.predict_proba(X.iloc[:3]), rtol=1e-6
    )
    assert any((tmp_path / "elsewhere").iterdir())
    assert use_cache(fitted, None).named_steps["preprocess"].cache_dir is None
    assert pooled_harmonisation(fitted, X) is None  # no ComBat step
    with pytest.raises(KeyError, match="no branch 'imaging'"):
        fitted_branch(fitted, "imaging")
