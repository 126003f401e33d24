"""The model card and the reporting checklist, built from a small fitted model and stored in the
model file. The command line's side (fit writes a .p53 file with its card, evaluate adds the
external cohort as the report's Table 5 has it, predict reads both formats and warns once on a
joblib pickle, the card command) is tested in tests/cli/test_fit_evaluate_predict.py on the model
fitted there; the demo's card against its Table 5 in tests/study/test_run.py, on the study run
there."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.pipeline import make_pipeline

from p53radiomics import InvertedBranchWarning, make_paper_pipeline, save_model
from p53radiomics.checklist import ANSWERED, FOR_THE_AUTHORS, reporting_checklist
from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.metrics import calibration_summary
from p53radiomics.model_card import (
    CARD_KEY,
    extend_model_card,
    format_model_card,
    read_model_card,
    training_model_card,
)
from p53radiomics.pipeline import MODEL_NAMES, branch_scores, fit_thresholds
from tests._estimators import Contrarian

SMALL = {"n_patients": 12, "voxel_scale": 3.0}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    directory = tmp_path_factory.mktemp("card_cohort")
    X, y = make_synthetic_cohort(directory, random_state=3, **SMALL)
    return X, y, directory


@pytest.fixture(scope="module")
def clinical_model(cohort):
    """The study's pipeline with its clinical branch only: fitted in seconds."""
    X, y, _ = cohort
    model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    model.set_params(fusion__radiomics="drop", fusion__deep="drop", preprocess__n_iterations=(5, 5))
    return model.fit(X, y)


@pytest.fixture(scope="module")
def card(cohort, clinical_model):
    X, y, _ = cohort
    return training_model_card(clinical_model, X, y, data_source="a synthetic cohort")


# ------------------------------------------------------------------ the card of a fitted model


def test_the_card_holds_what_the_model_computed(cohort, clinical_model, card):
    X, y, _ = cohort
    scores = branch_scores(clinical_model, X)
    thresholds = fit_thresholds(clinical_model, X, y, scores=scores)
    performance = {(r["model"], r["cohort"]): r for r in card["performance"]}
    from sklearn.metrics import roc_auc_score

    for branch in ("clinical", "combined"):
        row = performance[(MODEL_NAMES[branch], "TC")]
        assert row["auc"] == pytest.approx(roc_auc_score(y, scores[branch]), abs=1e-12)
        assert row["threshold"] == thresholds[branch] and row["n"] == len(y)
        assert row["auc_low"] <= row["auc"] <= row["auc_high"]
    expected = calibration_summary(y, scores["combined"])
    (calibration,) = card["calibration"]
    assert calibration["slope"] == expected.slope and calibration["brier"] == expected.brier
    final = clinical_model.named_steps["fusion"].final_estimator_
    assert card["contributions"]["coefficients"] == {"clinical": float(final.coef_[0, 0])}
    assert card["training_cohort"] == {
        **card["training_cohort"],
        "n": 12,
        "n_positive": int(y.sum()),
    }
    assert card["inputs"]["clinical_columns"] == ["ltd", "rim_aphe"]
    assert card["inputs"]["phases"] == ["ap", "pvp", "dp"]
    assert card["versions"]["p53radiomics"] and card["date"]
    assert any("No held-out or cross-validated estimate" in x for x in card["limitations"])
    json.dumps(card, allow_nan=False)  # what a model file holds


def test_the_card_travels_in_the_model_file(clinical_model, card, tmp_path):
    path = tmp_path / "model.p53"
    save_model(clinical_model, path, metadata={CARD_KEY: card})
    assert read_model_card(path) == card
    bare = tmp_path / "bare.p53"
    save_model(clinical_model, bare)
    from p53radiomics import ModelFileError

    with pytest.raises(ModelFileError, match="holds no model card"):
        read_model_card(bare)


def test_the_printed_card_has_every_section(card):
    text = format_model_card(card)
    for heading in ("Intended use", "Not intended use", "Training data", "Inputs", "Settings",
                    "Validation", "Performance", "Calibration of the combined model", "Contributions of the branches",
                    "Known limitations", "Versions"):  # fmt: skip
        assert f"\n## {heading}\n" in text, heading
    row = next(r for r in card["performance"] if r["model"] == "Combined model")
    assert f"{row['auc']:.3f} ({row['auc_low']:.3f}–{row['auc_high']:.3f})" in text
    assert "a synthetic cohort" in text


def test_a_branch_the_fusion_weighs_negatively_is_a_known_limitation(cohort, card):
    X, y, _ = cohort
    model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    contrarian = make_pipeline(make_column_transformer(("passthrough", ["ltd"])), Contrarian())
    model.set_params(
        fusion__radiomics=contrarian, fusion__deep="drop", preprocess__n_iterations=(5, 5)
    )
    with pytest.warns(InvertedBranchWarning, match="'radiomics'"):
        model.fit(X, y)
    coefficient = model.named_steps["fusion"].final_estimator_.coef_[0, 1]
    inverted = training_model_card(model, X, y)
    named = [text for text in inverted["limitations"] if "negatively" in text]
    assert len(named) == 1 and f"radiomics ({coefficient:.3g})" in named[0]
    assert "clinical" not in named[0]
    assert inverted["contributions"]["coefficients"]["radiomics"] == pytest.approx(coefficient)
    assert named[0] in format_model_card(inverted)
    assert not [text for text in card["limitations"] if "negatively" in text]


def test_an_external_evaluation_adds_its_cohort(card):
    row = {**card["performance"][0], "cohort": "External", "auc": 0.5}
    labels = {"External": np.array([0, 1, 0, 1, 1])}
    scores = {"External": {"combined": np.array([0.2, 0.7, 0.4, 0.6, 0.3])}}
    extended = extend_model_card(card, table5=pd.DataFrame([row]), labels=labels,
                                 scores=scores, cohorts={"External": "another centre"})  # fmt: skip
    assert [r["cohort"] for r in extended["performance"]][-1] == "External"
    assert [r["cohort"] for r in extended["calibration"]] == ["TC", "External"]
    assert extended["performance"][:-1] == card["performance"]  # the card given is unchanged


def test_the_checklist_answers_what_the_run_knows(card):
    table = reporting_checklist(card)
    assert list(table.columns) == ["guideline", "item", "topic", "status", "answer"]
    assert set(table["guideline"]) == {"TRIPOD+AI", "CLEAR"}
    assert set(table["status"]) == {ANSWERED, FOR_THE_AUTHORS}
    answered = table[table["status"] == ANSWERED].set_index(["guideline", "topic"])["answer"]
    assert answered["TRIPOD+AI", "sample size"].startswith("training: 12 patients")
    assert answered["TRIPOD+AI", "data source"] == "a synthetic cohort"
    assert (
        "PyRadiomics"
        in answered["CLEAR", "image preprocessing, feature extraction settings and software"]
    )
    assert "slope" in answered["TRIPOD+AI", "calibration"]
    assert (table.loc[table["status"] == FOR_THE_AUTHORS, "answer"] == "").all()
    unknown = reporting_checklist({**card, "missing_data": None, "data_source": None})
    left = unknown[unknown["status"] == FOR_THE_AUTHORS]["topic"].tolist()
    assert "missing data handling" in left and "data source" in left
