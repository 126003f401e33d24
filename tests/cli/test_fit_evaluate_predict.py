"""``fit``, ``evaluate``, ``predict`` and ``card`` on small synthetic cohorts, through the console
script's entry point in this process (:mod:`tests.cli.runner`): a model fitted once per module,
its file, its card, and the bad inputs and rows each command refuses or skips, in one line naming
the patient and the column."""

import zipfile

import joblib
import pandas as pd
import pytest

from p53radiomics import load_model
from p53radiomics.cli import PICKLE_WARNING
from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.model_card import format_model_card, read_model_card
from p53radiomics.pipeline import MODEL_NAMES
from tests.cli.runner import absolute_table, listing, one_line_error, run_cli

# Under `make test` (pytest-xdist, --dist loadgroup) the tests that share the fitted model go to
# one worker (their module-scoped fixtures are built once); the others are spread out.
fitted_model_group = pytest.mark.xdist_group("test_cli_fitted_model")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """A training cohort on the first four scanners and an external one on all seven, so that
    the external cohort has patients on scanners that training never saw."""
    train = tmp_path_factory.mktemp("train")
    external = tmp_path_factory.mktemp("external")
    make_synthetic_cohort(train, n_patients=16, random_state=11, voxel_scale=3.0, n_scanners=4)
    make_synthetic_cohort(external, n_patients=10, random_state=12, voxel_scale=3.0)
    return train, external


@pytest.fixture(scope="module")
def fitted_model(cohorts, tmp_path_factory):
    train, _ = cohorts
    before = listing(train)
    out = tmp_path_factory.mktemp("model") / "model.p53"
    result = run_cli(
        "fit",
        "--cohort",
        str(train / "cohort.csv"),
        "--label",
        "p53",
        "--out",
        str(out),
        "--profile",
        "smoke",
        "--mode",
        "mc",  # one CNN for the three phases, where FF trains three (the demo's final model)
        "--n-jobs",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert listing(train) == before  # nothing written into the input folder
    return out


@pytest.fixture(scope="module")
def external_cache(tmp_path_factory):
    """One per-case cache for the evaluations and predictions of the external cohort
    (``--cache-dir``): each of its cases is preprocessed once for the whole module."""
    return tmp_path_factory.mktemp("external_cache")


@fitted_model_group
def test_harmonised_2_5d_model_reports_the_scanners_it_could_not_harmonise(
    cohorts, fitted_model, external_cache, tmp_path
):
    train, external = cohorts
    model = tmp_path / "model.p53"
    # the other model's per-case cache serves this one: the same cases, the same preprocessing
    shared_cache = fitted_model.with_name("model_cache")
    result = run_cli(
        *("fit", "--cohort", str(train / "cohort.csv"), "--label", "p53", "--out", str(model)),
        *("--profile", "smoke", "--mode", "mc", "--n-jobs", "1"),
        *("--harmonize", "--context-slices", "1"),
        *("--cache-dir", str(shared_cache)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fitted = load_model(model)
    combat = fitted.named_steps["fusion"].named_estimators_["radiomics"].named_steps["harmonize"]
    assert (
        fitted.named_steps["fusion"]
        .named_estimators_["deep"]
        .named_steps["cnn"]
        .channels_per_phase_
        == 3
    )
    X_train = pd.read_csv(train / "cohort.csv")
    X_ext = pd.read_csv(external / "cohort.csv").set_index("patient_id")
    assert set(combat.batches_) | set(combat.pooled_batches_) == set(X_train["scanner"])
    expected = X_ext.index[~X_ext["scanner"].isin(combat.batches_)]
    assert len(expected)  # the test needs a scanner that training could not estimate
    result = run_cli(
        *("evaluate", "--model", str(model), "--cohort", str(external / "cohort.csv")),
        *("--label", "p53", "--out", str(tmp_path / "eval"), "--cache-dir", str(external_cache)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # said once, in the report and one line, rather than as a warning per transform
    assert "UnseenBatchWarning" not in result.stderr
    assert f"{len(expected)} patients are on scanners whose own effect" in result.stderr
    listed = pd.read_csv(tmp_path / "eval" / "harmonisation.csv", index_col=0)
    assert listed.index.tolist() == expected.tolist()
    assert "Patients harmonised with pooled ComBat estimates" in (
        tmp_path / "eval" / "report.html"
    ).read_text(encoding="utf-8")


@fitted_model_group
def test_fit_evaluate_predict(cohorts, fitted_model, tmp_path, monkeypatch):
    _, external = cohorts
    before = listing(external)
    model_cache = fitted_model.with_name("model_cache")
    assert model_cache.is_dir()  # fit keeps its per-case cache beside the model
    cache_before = listing(model_cache)
    result = run_cli(
        "evaluate",
        "--model",
        str(fitted_model),
        "--cohort",
        str(external / "cohort.csv"),
        "--label",
        "p53",
        "--out",
        str(tmp_path / "eval"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "runs code" not in result.stderr  # a .p53 file: no pickle warning
    assert "Combined model" in result.stdout and (tmp_path / "eval" / "report.html").is_file()
    table5 = pd.read_csv(tmp_path / "eval" / "table5.csv")
    assert "External" in table5["cohort"].tolist()
    # the model card: its external rows are the report's Table 5, its training rows the file's
    card = read_model_card(fitted_model)
    md = (tmp_path / "eval" / "model_card.md").read_text(encoding="utf-8")
    report = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Model card</h2>" in report and "Reporting checklist" in report
    for auc_ci in table5["auc_ci"]:
        assert auc_ci in md and report.count(auc_ci) >= 2, auc_ci
    for row in card["performance"]:
        assert f"{row['auc']:.3f} ({row['auc_low']:.3f}–{row['auc_high']:.3f})" in md
    checklist = pd.read_csv(tmp_path / "eval" / "checklist.csv", keep_default_na=False)
    calibration = checklist.loc[checklist["topic"] == "calibration", "answer"].item()
    assert "TC:" in calibration and "External:" in calibration
    result = run_cli(
        "predict",
        "--model",
        str(fitted_model),
        "--cohort",
        str(external / "cohort.csv"),
        "--out",
        str(tmp_path / "pred.csv"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = pd.read_csv(tmp_path / "pred.csv", index_col=0)
    assert list(predictions.columns) == [
        "p_clinical",
        "p_radiomics",
        "p_deep",
        "p_combined",
        "prediction",
    ]
    assert len(predictions) == 10 and predictions["p_combined"].between(0, 1).all()
    assert listing(external) == before
    # the model's own cache (beside it, from fit) is not written by evaluate or predict elsewhere
    assert (tmp_path / "eval" / "cache").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "pred.csv"]
    assert listing(model_cache) == cache_before
    # the same model as a joblib pickle predicts the same, after one line of warning
    pickle = tmp_path / "pickle" / "model.joblib"
    pickle.parent.mkdir()
    joblib.dump(load_model(fitted_model), pickle)
    result = run_cli(
        *("predict", "--model", str(pickle), "--cohort", str(external / "cohort.csv")),
        *("--out", str(tmp_path / "pickle" / "pred.csv")),
        *("--cache-dir", str(tmp_path / "eval" / "cache")),  # the cases evaluate preprocessed
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warning = PICKLE_WARNING.format(path=pickle)
    assert result.stderr.splitlines().count(warning) == 1 and "\n" not in warning
    assert "runs code from the file" in warning
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "pickle" / "pred.csv", index_col=0), predictions
    )


@fitted_model_group
def test_fit_writes_a_p53_file_with_its_card(fitted_model):
    assert zipfile.is_zipfile(fitted_model)
    card = read_model_card(fitted_model)
    assert {r["cohort"] for r in card["performance"]} == {"TC"}
    assert [r["model"] for r in card["performance"]] == list(MODEL_NAMES.values())
    assert card["training_cohort"]["n"] == 16
    assert "apparent" in card["cohorts"]["TC"] and card["settings"]["profile"] == "smoke"
    assert sorted(card["contributions"]["coefficients"]) == ["clinical", "deep", "radiomics"]


@fitted_model_group
def test_card_command_prints_the_card_and_refuses_a_pickle(fitted_model, tmp_path):
    result = run_cli("card", str(fitted_model))
    assert result.returncode == 0, result.stderr
    assert result.stdout == format_model_card(read_model_card(fitted_model))
    joblib.dump(load_model(fitted_model), tmp_path / "model.joblib")
    result = run_cli("card", str(tmp_path / "model.joblib"))
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not a zip archive" in result.stderr


@fitted_model_group
def test_a_refused_model_file_is_one_line_and_exit_code_2(cohorts, fitted_model, tmp_path):
    _, external = cohorts
    damaged = tmp_path / "damaged.p53"
    with zipfile.ZipFile(fitted_model) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data + b" " if name == "metadata.json" else data)
    result = run_cli(
        *("predict", "--model", str(damaged), "--cohort", str(external / "cohort.csv")),
        *("--out", str(tmp_path / "p.csv")),
    )
    one_line_error(result, "metadata.json")
    assert result.stderr.startswith("p53radiomics predict: error:")
    assert not (tmp_path / "p.csv").exists()


@fitted_model_group
def test_bad_rows_name_patient_and_column_or_are_skipped(
    cohorts, fitted_model, external_cache, tmp_path
):
    _, external = cohorts
    table = absolute_table(external)
    table.loc[2, "pvp"] = str(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.csv"
    table.to_csv(bad, index=False)
    result = run_cli(
        "predict",
        "--model",
        str(fitted_model),
        "--cohort",
        str(bad),
        "--out",
        str(tmp_path / "p.csv"),
    )
    assert result.returncode != 0
    assert "error: patient 'P0003', column 'pvp': file not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(
        "evaluate",
        "--model",
        str(fitted_model),
        "--cohort",
        str(bad),
        "--label",
        "p53",
        "--out",
        str(tmp_path / "eval"),
        "--on-error",
        "skip",
        "--cache-dir",
        str(external_cache),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert "Skipped patients (1)" in report and "P0003" in report and "file not found" in report
    result = run_cli(
        "predict",
        "--model",
        str(fitted_model),
        "--cohort",
        str(bad),
        "--out",
        str(tmp_path / "p.csv"),
        "--on-error",
        "skip",
        "--cache-dir",
        str(external_cache),
    )
    assert result.returncode == 0 and "skipped patient 'P0003'" in result.stderr
    assert "P0003" not in pd.read_csv(tmp_path / "p.csv", index_col=0).index


@fitted_model_group
def test_string_labels_need_a_positive_class_and_are_refused_before_any_image_work(
    cohorts, tmp_path
):
    train, _ = cohorts
    table = absolute_table(train)
    table["p53"] = table["p53"].map({1: "pos", 0: "neg"})
    cohort = tmp_path / "strings.csv"
    table.to_csv(cohort, index=False)
    model = tmp_path / "model.joblib"
    result = run_cli("fit", "--cohort", str(cohort), "--label", "p53", "--out", str(model))
    one_line_error(result, "column 'p53'", "'neg'", "'pos'", "--positive")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strings.csv"]  # no cache, no model
    result = run_cli(
        *("fit", "--cohort", str(cohort), "--label", "p53", "--out", str(model)),
        *("--positive", "mutant"),
    )
    one_line_error(result, "column 'p53'", "'mutant'", "'neg'", "'pos'")


@fitted_model_group
def test_missing_label_stops_fit_at_once_naming_patient_and_column(cohorts, tmp_path):
    train, _ = cohorts
    table = absolute_table(train)
    table["p53"] = table["p53"].astype(float)
    table.loc[3, "p53"] = float("nan")
    cohort = tmp_path / "nan.csv"
    table.to_csv(cohort, index=False)
    result = run_cli(
        *("fit", "--cohort", str(cohort), "--label", "p53", "--out", str(tmp_path / "m.joblib"))
    )
    one_line_error(result, f"patient {table.loc[3, 'patient_id']!r}", "column 'p53'", "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.csv"]


@fitted_model_group
def test_predict_without_a_clinical_column_of_the_model_is_one_line(
    cohorts, fitted_model, tmp_path
):
    from p53radiomics.pipeline import fitted_clinical_columns

    _, external = cohorts
    needed = fitted_clinical_columns(load_model(fitted_model))
    table = absolute_table(external).drop(columns=[needed[0]])
    cohort = tmp_path / "no_column.csv"
    table.to_csv(cohort, index=False)
    for on_error in ("raise", "skip"):
        result = run_cli(
            *("predict", "--model", str(fitted_model), "--cohort", str(cohort)),
            *("--out", str(tmp_path / "p.csv"), "--on-error", on_error),
        )
        one_line_error(result, f"column {needed[0]!r}")
    assert not (tmp_path / "p.csv").exists()


@fitted_model_group
def test_evaluate_string_labels_with_positive_and_skipped_missing_labels(
    cohorts, fitted_model, external_cache, tmp_path
):
    _, external = cohorts
    table = absolute_table(external)
    missing = table.loc[4, "patient_id"]
    outputs = {}
    # the same patients labelled 0/1 and in words ("mutant" sorts before "wild-type", so a
    # positive class taken from the sorted order would invert every AUC); one label missing
    for kind, labels, extra in [
        ("numeric", table["p53"].astype(float), ()),
        ("words", table["p53"].map({1: "mutant", 0: "wild-type"}), ("--positive", "mutant")),
    ]:
        labels = labels.astype(object)
        labels[4] = None
        cohort = tmp_path / f"{kind}.csv"
        table.assign(p53=labels).to_csv(cohort, index=False)
        result = run_cli(
            *("evaluate", "--model", str(fitted_model), "--cohort", str(cohort)),
            *("--label", "p53", "--out", str(tmp_path / kind), "--on-error", "skip", *extra),
            *("--cache-dir", str(external_cache)),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "1 patients skipped; listed in the report" in result.stderr
        report = (tmp_path / kind / "report.html").read_text(encoding="utf-8")
        assert "Skipped patients (1)" in report and missing in report
        assert "label is missing" in report
        outputs[kind] = pd.read_csv(tmp_path / kind / "table5.csv")
    assert (outputs["numeric"]["n"] == 9).all()
    pd.testing.assert_frame_equal(outputs["numeric"], outputs["words"])
