"""The study's reproducibility stage (issue 17 item 5): the agreement of the features between
readers and sessions in the demo's report, its CSV and summary lines, the radiomics model with and
without the robustness filter; the cohort without repeated ROIs; ``fit --robustness-threshold``
(item 6)."""

import re

import pandas as pd
import pytest

from p53radiomics.metrics import reproducibility_summary
from p53radiomics.report import write_report
from p53radiomics.study import profile_pipeline
from p53radiomics.study._reproducibility import (
    SECTION_HEADING,
    feature_groups,
    reproducibility_stage,
)
from p53radiomics.study._tables import StageClock

# The study is tests/study/conftest.py's small_study, shared with tests/study/test_run.py: one
# worker runs both modules and builds it once (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("study")

SUMMARY = re.compile(r"^(radiomics|CNN): (inter|intra)-reader ICC -?\d\.\d\d \(95% CI .+\)$")


@pytest.fixture(scope="module")
def study(small_study):
    """``(out, result, console)`` of the small study, whose cohort has 6 patients with repeated
    ROIs (tests/study/conftest.py)."""
    return small_study


def test_the_report_has_the_agreement_between_readers_and_sessions(study, small_study_settings):
    out, result, _ = study
    assert "reproducibility" in result.stages.index
    assert result.timings["reproducibility"] == result.stages.loc["reproducibility", "wall_s"]
    table = pd.read_csv(out / "reproducibility.csv", index_col=[0, 1, 2]).sort_index()
    assert set(table.index.get_level_values("model")) == {"radiomics", "CNN"}
    assert set(table.index.get_level_values("comparison")) == {"inter-reader", "intra-reader"}
    assert set(table.loc["CNN", "class"]) == {"CNN"}
    assert set(table.loc["radiomics", "phase"]) == {"ap", "pvp", "dp"}
    assert (table["n_patients"] == small_study_settings["n_repeated"]).all()
    report = (out / "report.html").read_text(encoding="utf-8")
    assert SECTION_HEADING in report and "icc_by_class" in report
    assert (out / "icc_by_class.png").stat().st_size > 0
    # each summary line is the CSV's own: reproducibility_summary of the table read back
    radiomics = table.loc["radiomics"]
    radiomics.attrs = {"confidence": 0.95}
    for comparison in ("inter-reader", "intra-reader"):
        assert f"<li>radiomics: {reproducibility_summary(radiomics, comparison)}</li>" in report
    items = [part.split("</li>")[0] for part in report.split("<li>")[1:]]
    assert len([item for item in items if SUMMARY.match(item)]) == 4  # radiomics and CNN


def test_the_radiomics_model_with_and_without_the_filter(study):
    out, result, _ = study
    robustness = result.tables["robustness"]
    assert list(robustness.index) == [
        "Radiomics, without filter",
        "Radiomics, with filter (ICC >= 0.75)",
    ]
    without, with_filter = robustness["features"]
    assert 0 < with_filter <= without == 3 * 107  # the original image's features per phase
    assert robustness["VC AUC"].between(0, 1).all()
    assert 0 <= robustness["DeLong p (vs without)"].iloc[1] <= 1
    # the filter read the repeated ROIs' features that the stage extracted: none computed again
    hits, misses = robustness.attrs["cache"]
    assert hits > 0 and misses == 0
    assert (out / "robustness.csv").is_file()
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "The radiomics model with and without the robustness filter" in report


def test_the_console_prints_the_summary_lines(study):
    _, result, console = study
    summary = console[console.index("Reproducibility of the features") :].splitlines()[1:5]
    assert [line for line in summary if SUMMARY.match(line)] == summary
    assert "The radiomics model with and without the robustness filter" in console
    assert console.index("Reproducibility of the features") < console.index("Run time and memory")


@pytest.mark.parametrize(
    "columns, reason",
    [
        ({}, "no repeated mask columns"),
        ({"mask_reader2": ["r1.nii", "", ""]}, "reader2 1"),
    ],
)
def test_a_cohort_without_repeated_rois_says_so(tmp_path, columns, reason):
    Xp = pd.DataFrame(
        {"ap": ["a1.nii", "a2.nii", "a3.nii"], "mask": ["m1.nii", "m2.nii", "m3.nii"], **columns},
        index=["P1", "P2", "P3"],
    ).replace("", None)
    clock = StageClock()
    result = reproducibility_stage(tmp_path, None, Xp, None, None, ("ap",), clock)
    assert result.tables == {"reproducibility": None, "robustness": None}
    assert result.summary == [] and result.figures == {} and clock.rows == []
    heading, (text,) = result.section
    assert heading == SECTION_HEADING
    assert text.startswith("No repeated ROIs in this cohort") and reason in text
    report = write_report(tmp_path / "report.html", title="t", tables=result.tables, figures={},
                          sections=[result.section])  # fmt: skip
    assert "No repeated ROIs in this cohort" in report.read_text(encoding="utf-8")


def test_feature_groups_refuses_a_name_it_cannot_read():
    with pytest.raises(ValueError, match="'volume'"):
        feature_groups(["volume"], ("ap",))


def test_fit_robustness_threshold_reaches_the_pipeline(capsys):
    from p53radiomics.cli import build_parser

    base = ["fit", "--cohort", "c.csv", "--label", "p53", "--out", "m.p53"]
    args = build_parser().parse_args(base + ["--robustness-threshold", "0.75"])
    assert args.robustness_threshold == 0.75
    model = profile_pipeline("smoke", ["ltd"], robustness_threshold=args.robustness_threshold)
    assert model.get_params()["fusion__radiomics__extract__robustness_threshold"] == 0.75
    assert build_parser().parse_args(base).robustness_threshold is None
    for bad in ("1.5", "good"):
        with pytest.raises(SystemExit) as raised:
            build_parser().parse_args(base + ["--robustness-threshold", bad])
        assert raised.value.code == 2
        assert "--robustness-threshold" in capsys.readouterr().err
