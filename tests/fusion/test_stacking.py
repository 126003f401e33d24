"""StackingFusion: out-of-fold scores for the final estimator, branch names, grid search, and the
warning on a branch weighed negatively."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from p53radiomics import InvertedBranchWarning
from p53radiomics.fusion import StackingFusion, negative_branch_weights
from tests._estimators import Contrarian


def _table(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = pd.DataFrame(
        {
            "ltd": rng.normal(40 + 10 * y, 15),
            "rim_aphe": (rng.random(n) < 0.1 + 0.3 * y).astype(int),
            "noise": rng.normal(size=n),
            "ap": [
                f"/nowhere/P{i}.nii.gz" for i in range(n)
            ],  # an image column the branches ignore
        },
        index=[f"P{i:03d}" for i in range(n)],
    )
    return X, y


def _branch(columns, model=None):
    return make_pipeline(
        make_column_transformer(("passthrough", columns)), model or LogisticRegression()
    )


def test_final_estimator_sees_only_out_of_fold_scores():
    X, y = _table()
    # a 1-nearest-neighbour branch is perfect on the patients it was trained on: if the final
    # estimator saw in-fold scores it would put all its weight on them
    memorizer = _branch(["noise"], KNeighborsClassifier(n_neighbors=1))
    clinical = _branch(["ltd", "rim_aphe"])
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    fusion = StackingFusion([("memorizer", memorizer), ("clinical", clinical)], cv=cv).fit(X, y)
    oof = np.c_[
        cross_val_predict(memorizer, X, y, cv=cv, method="predict_proba")[:, 1],
        cross_val_predict(clinical, X, y, cv=cv, method="predict_proba")[:, 1],
    ]
    expected = LogisticRegression().fit(oof, y)
    np.testing.assert_allclose(fusion.final_estimator_.coef_, expected.coef_, rtol=1e-6)
    in_fold = fusion.transform(X)
    assert (in_fold[:, 0] == y).all()  # the refitted memorizer is perfect in-fold ...
    assert abs(fusion.final_estimator_.coef_[0, 0]) < abs(
        fusion.final_estimator_.coef_[0, 1]
    )  # ... and not trusted


def test_transform_is_named_by_branch_and_keeps_the_index():
    X, y = _table()
    fusion = StackingFusion(
        [("clinical", _branch(["ltd", "rim_aphe"])), ("noise", _branch(["noise"]))], cv=3
    )
    out = fusion.set_output(transform="pandas").fit(X, y).transform(X)
    assert list(out.columns) == ["clinical", "noise"] and out.index.equals(X.index)
    assert ((out >= 0) & (out <= 1)).all().all()
    proba = fusion.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(fusion.predict(X)) <= {0, 1}


def test_works_inside_grid_search_and_pickles():
    X, y = _table()
    fusion = StackingFusion(
        [("clinical", _branch(["ltd", "rim_aphe"])), ("noise", _branch(["noise"]))], cv=3
    )
    grid = GridSearchCV(
        fusion,
        {"clinical__logisticregression__C": [0.01, 1.0], "noise": [_branch(["noise"]), "drop"]},
        cv=3,
        scoring="roc_auc",
    )
    grid.fit(X, y)
    assert "drop" in [str(v) for v in grid.cv_results_["param_noise"]]
    best = grid.best_estimator_
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict_proba(X), best.predict_proba(X))


def test_dropped_branch_and_string_labels():
    X, y = _table()
    labels = np.where(y == 1, "mutated", "wild-type")
    fusion = StackingFusion(
        [("clinical", _branch(["ltd", "rim_aphe"])), ("noise", "drop")], cv=3
    ).fit(X, labels)
    assert list(fusion.get_feature_names_out()) == ["clinical"]
    assert set(fusion.predict(X)) <= {"mutated", "wild-type"}


def test_single_class_is_an_error():
    X, _ = _table()
    with pytest.raises(ValueError):
        StackingFusion([("clinical", _branch(["ltd"]))], cv=3).fit(X, np.ones(len(X)))


# ------------------------------------------------------------ a branch the fusion weighs negatively


def test_an_overfit_branch_weighed_negatively_is_warned_of_and_inverts_the_training_cohort():
    # 30 patients: the 1-nearest-neighbour branch on noise is perfect on its training patients,
    # and its out-of-fold scores happen to rank them against the label (seed 2)
    X, y = _table(n=30, seed=2)
    memorizer = _branch(["noise"], KNeighborsClassifier(n_neighbors=1))
    clinical_branch = _branch(["ltd", "rim_aphe"])
    fusion = StackingFusion([("memorizer", memorizer), ("clinical", clinical_branch)], cv=3)
    with pytest.warns(InvertedBranchWarning, match=r"branches 'memorizer' \(-0\.\d+\) negatively"):
        fusion.fit(X, y)
    negative = negative_branch_weights(fusion)
    assert list(negative) == ["memorizer"] and negative["memorizer"] < 0
    assert negative["memorizer"] == fusion.final_estimator_.coef_[0, 0]
    # what the warning is about: the refitted memorizer is perfect on the training cohort, and
    # its negative weight ranks that cohort in reverse, below the clinical branch alone
    clinical = fusion.named_estimators_["clinical"].predict_proba(X)[:, 1]
    fused = fusion.predict_proba(X)[:, 1]
    assert roc_auc_score(y, fusion.transform(X)[:, 0]) == 1.0
    assert roc_auc_score(y, fused) < 0.5 < roc_auc_score(y, clinical)


def test_a_branch_ranking_patients_against_the_label_is_named_alone():
    X, y = _table()
    fusion = StackingFusion(
        [
            ("clinical", _branch(["ltd", "rim_aphe"])),
            ("contrarian", _branch(["ltd"], Contrarian())),
        ],
        cv=3,
    )
    with pytest.warns(InvertedBranchWarning, match="'contrarian'") as caught:
        fusion.fit(X, y)
    assert "'clinical'" not in str(caught[0].message)
    assert list(negative_branch_weights(fusion)) == ["contrarian"]


def test_branches_weighed_positively_are_not_warned_of():
    X, y = _table()
    fusion = StackingFusion(
        [("size", _branch(["ltd"])), ("enhancement", _branch(["rim_aphe"]))], cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", InvertedBranchWarning)
        fusion.fit(X, y)
    assert (fusion.final_estimator_.coef_ > 0).all() and negative_branch_weights(fusion) == {}


def test_negative_branch_weights_needs_a_fitted_fusion_and_a_coefficient_per_branch():
    X, y = _table()
    fusion = StackingFusion(
        [("clinical", _branch(["ltd"])), ("contrarian", _branch(["ltd"], Contrarian()))]
    )
    with pytest.raises(NotFittedError):
        negative_branch_weights(fusion)
    # a final estimator without coefficients: nothing to read, and no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", InvertedBranchWarning)
        fusion.set_params(final_estimator=GaussianNB(), cv=3).fit(X, y)
    assert negative_branch_weights(fusion) == {}
