"""The study package's own pieces, and one small study run in process: its stage table, and the
same Table 5 whatever n_jobs (tests/cli/test_demo.py runs the study as a user does). The study is
tests/study/conftest.py's small_study, shared with tests/study/test_reproducibility.py."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from p53radiomics.pipeline import DEEP_BRANCH_DEFAULTS
from p53radiomics.study import PROFILES, StudyResult, profile_pipeline, run_study

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests and
# tests/study/test_reproducibility.py's share one worker, so the session's small study
# (tests/study/conftest.py) is built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("study")


def test_the_full_profile_is_the_study_deep_model():
    full = PROFILES["full"]
    assert (full.final_backbone, full.final_mode) == (
        DEEP_BRANCH_DEFAULTS["backbone"],
        DEEP_BRANCH_DEFAULTS["mode"],
    )
    params = profile_pipeline("full", ["ltd"]).get_params()
    for name in ("backbone", "mode", "n_components", "max_epochs", "batch_size"):
        assert params[f"fusion__deep__cnn__{name}"] == DEEP_BRANCH_DEFAULTS[name], name
    assert params["fusion__deep__crop__size"] == DEEP_BRANCH_DEFAULTS["crop_size"]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_reaches_the_deep_branch(name):
    profile = PROFILES[name]
    params = profile_pipeline(name, ["ltd"], backbone="resnet34").get_params()
    assert params["fusion__deep__cnn__backbone"] == "resnet34"
    assert params["fusion__deep__cnn__mode"] == profile.final_mode
    assert params["fusion__deep__cnn__n_components"] == profile.n_components
    assert params["fusion__deep__crop__size"] == profile.crop_size
    assert params["fusion__deep__cnn__max_epochs"] == profile.max_epochs
    assert params["fusion__deep__cnn__batch_size"] == profile.batch_size


def test_study_result_reads_as_the_dict_run_study_returned():
    table5 = pd.DataFrame({"model": ["Combined model"]})
    skipped = pd.DataFrame(columns=["column", "reason"])
    result = StudyResult({"table1": None, "table5": table5}, "MODEL", {"total": 1.0}, skipped)
    assert list(result) == ["table1", "table5", "model", "timings", "skipped"]
    assert result["table5"] is table5 and result["model"] == "MODEL"
    assert result.get("table3") is None and "timings" in result and len(result) == 5
    assert dict(result) == {**{"table1": None, "table5": table5}, "model": "MODEL",
                            "timings": {"total": 1.0}, "skipped": skipped}  # fmt: skip
    assert result.tables["table5"] is table5 and result.figures == {}
    with pytest.raises(KeyError):
        result["figures"]


# One small study, run in process and reused by the tests below (tests/study/conftest.py's
# small_study): the smoke profile with one CNN configuration in the comparison (MC ResNet18) on
# 12 patients, 6 of them with repeated ROIs (small_study_settings).
def test_every_stage_is_measured(small_study, small_study_settings):
    out, result, _ = small_study
    stages = result.stages
    external = ["external cohort", "external checks", "external preprocessing",
                "external radiomics extraction", "external evaluation"]  # fmt: skip
    names = ["cohort", "checks, split, Tables 1-2", *external[:2], "preprocessing",
             "radiomics extraction", "CNN crops", "CNN MC_resnet18", "combined model",
             "evaluation", *external[2:], "harmonisation effect", "reproducibility", "figures",
             "report", "total"]  # fmt: skip
    assert list(stages.index) == names
    assert stages.attrs["n_patients"] == small_study_settings["n_patients"]
    assert (stages["wall_s"] > 0).all() and (stages["cpu_s"] > 0).all()
    assert (stages["peak_rss_mib"] > 0).all() and (stages["peak_rss_all_mib"] > 0).all()
    assert (stages["peak_rss_all_mib"] >= stages["peak_rss_mib"]).all()
    # per patient: the external stages per external patient, the others per development patient
    n = pd.Series(small_study_settings["n_patients"], index=stages.index, dtype=float)
    n[external] = small_study_settings["n_external"]
    for column in ("wall_s", "cpu_s"):
        np.testing.assert_allclose(stages[f"{column}_per_patient"], stages[column] / n)
    # the stages cover the run: what is left is logging and building the pipeline (about a second;
    # on a busy machine a few percent of the run)
    total, parts = stages.loc["total"], stages.drop(index="total")
    slack = max(1.0, 0.05 * total["wall_s"])
    assert parts["wall_s"].sum() <= total["wall_s"] <= parts["wall_s"].sum() + slack
    assert total["cpu_s"] == pytest.approx(
        parts["cpu_s"].sum(), abs=max(1.0, 0.05 * total["cpu_s"])
    )
    assert total["peak_rss_mib"] == parts["peak_rss_mib"].max()
    # the timings of earlier versions, the same wall seconds
    timings = result.timings
    assert result["timings"] is timings
    assert timings["total"] == stages.loc["total", "wall_s"]
    assert timings["cnn_comparison"] == pytest.approx(
        stages.loc[["CNN crops", "CNN MC_resnet18"], "wall_s"].sum()
    )
    for key, stage in (("cohort", "cohort"), ("preprocessing", "preprocessing"),
                       ("radiomics", "radiomics extraction"), ("combined_model", "combined model"),
                       ("evaluation", "evaluation"), ("figures", "figures"), ("report", "report"),
                       ("harmonisation", "harmonisation effect")):  # fmt: skip
        assert timings[key] == stages.loc[stage, "wall_s"], key
    assert timings["external"] == pytest.approx(stages.loc[external, "wall_s"].sum())


def test_the_stage_table_is_in_the_settings_and_at_the_end_of_the_report(
    small_study, small_study_settings
):
    out, result, _ = small_study
    settings = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert settings["n_patients"] == small_study_settings["n_patients"]
    saved = pd.DataFrame(settings["stages"]).set_index("stage")
    pd.testing.assert_frame_equal(saved, result.stages, check_names=False, check_like=False)
    assert "cpu_s" in settings["stage_columns"] and "per_patient" in settings["stage_columns"]
    report = (out / "report.html").read_text(encoding="utf-8")
    heading = report.index(
        f"Run time and memory by stage ({small_study_settings['n_patients']} patients)"
    )
    assert heading > report.index("<h2>Settings</h2>") > report.index("Table 5.")
    assert "CNN MC_resnet18" in report[heading:] and "wall_s_per_patient" in report[heading:]
    assert "'stages'" not in report  # not repeated as a setting


def test_n_jobs_gives_the_same_table5(
    small_study, small_profile, small_study_settings, tmp_path, capsys
):
    out, one_job, _ = small_study
    from p53radiomics.io import read_cohort_csv

    # the same cohort (generating it is deterministic whatever n_jobs: tests/datasets/test_synthetic.py)
    X, y = read_cohort_csv(out / "cohort" / "cohort.csv", label="p53")
    capsys.readouterr()
    # without Tables 3-4, which Table 5 does not depend on: its models are fitted apart, each
    # seeded by random_state without torch's global random state
    no_comparison = dataclasses.replace(small_profile, modes=())
    X_ev, y_ev = read_cohort_csv(out / "external" / "cohort.csv", label="p53")
    # the same external cohort given as the user's (X_external): the same EV rows
    two_jobs = run_study(tmp_path, X, y, profile=no_comparison, n_jobs=2, X_external=X_ev,
                         y_external=y_ev)  # fmt: skip
    for name in ("table5", "delong", "harmonisation_effect"):
        pd.testing.assert_frame_equal(two_jobs.tables[name], one_job.tables[name], obj=name)
    assert not (tmp_path / "external").exists()  # nothing generated
    assert "cohort" not in two_jobs.stages.index and "cohort" not in two_jobs.timings
    # the worker processes' CPU time and memory are counted (psutil): the same N4 work, done in
    # the workers, is not lost from the stage's CPU time, and their memory adds to the main one's
    one, two = one_job.stages.loc["preprocessing"], two_jobs.stages.loc["preprocessing"]
    assert two["cpu_s"] >= 0.5 * one["cpu_s"]
    assert two["peak_rss_all_mib"] > two["peak_rss_mib"] + 50
    lines = capsys.readouterr().out.rstrip().splitlines()
    table = lines[
        lines.index(
            f"Run time and memory by stage ({small_study_settings['n_patients']} patients)"
        ) :
    ]
    assert len(table) == len(two_jobs.stages) + 3  # heading, columns, index name, stages
    assert table[-1].startswith("total ")


def test_the_demo_card_is_the_reports_table5(small_study):
    from p53radiomics.checklist import reporting_checklist
    from p53radiomics.model_card import read_model_card

    out, result, _ = small_study
    card, table5 = read_model_card(out / "model.p53"), result.tables["table5"]
    assert not (out / "model.joblib").exists()
    assert [(r["model"], r["cohort"]) for r in card["performance"]] == list(
        zip(table5["model"], table5["cohort"], strict=True)
    )
    for row, (_, expected) in zip(card["performance"], table5.iterrows(), strict=True):
        for column in (
            "n", "threshold", "accuracy", "auc", "auc_low", "auc_high", "sensitivity", "specificity",
        ):  # fmt: skip
            assert row[column] == expected[column], column
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Model card</h2>" in report
    assert all(report.count(auc_ci) >= 2 for auc_ci in table5["auc_ci"])
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "checklist.csv", keep_default_na=False, dtype=str),
        reporting_checklist(card).astype(str),
    )


def test_the_report_says_which_scanner_effects_were_simulated(small_study):
    out, _, _ = small_study
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Simulated scanners" in report and "noise_correlation" in report
    cohort = pd.read_csv(out / "cohort" / "cohort.csv")
    for name in cohort["scanner"].unique():
        assert f"<th>{name}</th>" in report, name
    from p53radiomics.datasets import SCANNERS, scanner_table

    table = scanner_table()
    assert list(table.index) == [s.name for s in SCANNERS]
    assert table.loc["S6", "kernel"] == SCANNERS[5].kernel > 0
    assert table.loc["S3", "slice_thickness_mm"] == SCANNERS[2].slice_thickness


def test_the_study_model_file_holds_no_patient_id(small_study, patient_ids_in_file):
    """The study's model is made to be shared: neither the image steps' records of the cases they
    saw last (left out of the file) nor any cohort's diagnostics (the radiomics cache is filled
    with a copy of the extractor, not with the model's unfitted branch) carry a patient id."""
    out, result, _ = small_study
    tables = [pd.read_csv(out / c / "cohort.csv", dtype=str) for c in ("cohort", "external")]
    assert [len(t) for t in tables] == [14, 6]  # the development and external cohorts
    ids = {pid for table in tables for pid in table.iloc[:, 0]}
    assert patient_ids_in_file(out / "model.p53", ids) == set()
    template = result.model.get_params()["fusion__radiomics__extract"]
    assert not hasattr(template, "diagnostics_") and not hasattr(template, "cache_hits_")
