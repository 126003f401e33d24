"""``p53radiomics demo`` as a user runs it: the whole study on a small synthetic cohort in a
subprocess, every output under ``--out`` and nothing elsewhere; a bad ``--n-external`` refused
before any work."""

import pandas as pd
import pytest

from tests.cli.runner import console, one_line_error, run_cli


def test_demo_runs_the_study_and_writes_only_under_out(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    result = console(
        "demo",
        "--out",
        str(out),
        "--profile",
        "smoke",
        "--n-patients",
        "14",  # 8 and 6: about the fewest the 7:3 split and the 2-fold stacking take
        "--voxel-scale",
        "3",
        "--n-jobs",
        "1",
        "--n-external",
        "0",  # no external cohort: tests/study/ runs the study with one
        cwd=work,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for heading in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "DeLong"):
        assert heading in result.stdout
    for name in (
        "report.html",
        "table1.csv",
        "table2.csv",
        "table3.csv",
        "table4.csv",
        "table5.csv",
        "delong.csv",
        "model.p53",
        "model_card.md",
        "checklist.csv",
        "roc_vc.png",
        "nomogram.png",
    ):
        assert (out / name).is_file(), name
    report = (out / "report.html").read_text(encoding="utf-8")
    for heading in (
        "Table 1.",
        "Table 2.",
        "Table 3.",
        "Table 4.",
        "Table 5.",
        "DeLong tests",
        "Figures",
        "Grad-CAM",
        "Profile: smoke",
    ):
        assert heading in report, heading
    assert (
        report.count('<img src="data:image/png;base64,') >= 8
    )  # figures embedded: readable offline
    table5 = pd.read_csv(out / "table5.csv")
    assert list(table5["model"].unique()) == [
        "Clinical model",
        "Radiomics model",
        "DL model",
        "Combined model",
    ]
    assert list(table5["cohort"].unique()) == ["TC", "VC"]  # --n-external 0: no EV
    assert not (out / "external").exists() and not (out / "harmonisation_effect.csv").exists()
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "work"]


@pytest.mark.parametrize("value", ["3", "-2"])
def test_demo_refuses_a_bad_n_external_before_any_work(tmp_path, value):
    result = run_cli("demo", "--out", str(tmp_path / "out"), "--n-external", value)
    assert result.returncode == 2
    one_line_error(result, "--n-external", "n_external")
    assert (
        "2 patients on each of its 3 scanners" in result.stderr or "integer >= 0" in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_demo_refuses_a_cohort_too_small_for_its_folds_before_any_image_work(tmp_path):
    # 12 patients: 8 in the TC, 3 of them wild-type; the smoke profile's 2-fold stacking leaves
    # 1 of those in a training fold, where its LASSO steps cross-validate (they failed there,
    # after the preprocessing, the extraction and the CNN comparison)
    out = tmp_path / "out"
    result = run_cli(
        *("demo", "--out", str(out), "--profile", "smoke", "--n-patients", "12"),
        *("--voxel-scale", "3", "--n-jobs", "1", "--n-external", "0"),
    )
    one_line_error(result, "the training cohort (TC) has 3 wild-type patients", "2-fold stacking")
    assert "needs 4 patients of each class" in result.stderr
    assert not (out / "cache").exists() and not (out / "table1.csv").exists()
