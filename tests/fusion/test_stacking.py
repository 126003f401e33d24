"""StackingFusion: out-of-fold scores for the final estimator, branch names, grid search."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from p53radiomics.fusion import StackingFusion


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
