"""The study's external cohort (issue 18 items 3 and 5): the fitted model evaluated on a synthetic
external site (EV, scanners absent from the development cohort) beside the TC and the VC, and the
radiomics model without and with ComBat harmonisation in the VC and the EV. The study is
tests/study/conftest.py's small_study (6 EV patients, 2 per external scanner)."""

import numpy as np
import pandas as pd
import pytest

from p53radiomics.datasets import EXTERNAL_SCANNERS
from p53radiomics.harmonization import between_batch_share
from p53radiomics.pipeline import MODEL_NAMES, make_radiomics_branch
from p53radiomics.study import run_study
from p53radiomics.study._harmonisation import with_harmonisation, without_harmonisation

pytestmark = pytest.mark.xdist_group("study")

EV_NAMES = sorted(s.name for s in EXTERNAL_SCANNERS)


def test_table5_and_the_delong_tests_have_the_external_cohort(small_study, small_study_settings):
    out, result, console = small_study
    table5 = pd.read_csv(out / "table5.csv")
    assert list(table5["model"].unique()) == list(MODEL_NAMES.values())
    for model, rows in table5.groupby("model", sort=False):
        assert list(rows["cohort"]) == ["TC", "VC", "EV"], model
        # the EV at the TC's thresholds, as the VC
        assert rows["threshold"].nunique() == 1, model
    ev = table5[table5["cohort"] == "EV"]
    assert (ev["n"] == small_study_settings["n_external"]).all()
    assert np.isfinite(ev[["auc", "auc_low", "auc_high", "accuracy"]].to_numpy()).all()
    delong = pd.read_csv(out / "delong.csv")
    assert list(delong["cohort"].unique()) == ["TC", "VC", "EV"]
    assert len(delong[delong["cohort"] == "EV"]) == 3
    # the EV cohort drawn from the external scanners only, 2 per scanner, into out/external
    cohort = pd.read_csv(out / "external" / "cohort.csv")
    assert sorted(cohort["scanner"].unique()) == EV_NAMES
    assert (cohort["scanner"].value_counts() == 2).all() and cohort["p53"].nunique() == 2
    development = pd.read_csv(out / "cohort" / "cohort.csv")
    assert not set(development["scanner"]) & set(cohort["scanner"])
    assert (out / "roc_ev.png").stat().st_size > 0
    assert "EV" in console


def test_the_card_and_checklist_list_the_external_cohort(small_study, small_study_settings):
    from p53radiomics.model_card import read_model_card

    out, result, _ = small_study
    card = read_model_card(out / "model.p53")
    assert "EV" in card["cohorts"] and "none of them in the TC" in card["cohorts"]["EV"]
    assert "external validation cohort (EV" in card["validation_scheme"]
    assert [r["cohort"] for r in card["calibration"]] == ["TC", "VC", "EV"]
    checklist = pd.read_csv(out / "checklist.csv", keep_default_na=False)
    size = checklist.loc[checklist["topic"] == "sample size", "answer"].item()
    assert f"EV: {small_study_settings['n_external']}" in size
    assert "EV: external validation cohort" in (out / "model_card.md").read_text(encoding="utf-8")


def test_the_harmonisation_table(small_study):
    out, result, console = small_study
    table = pd.read_csv(out / "harmonisation_effect.csv", index_col=0)
    assert list(table.index) == [
        "no harmonisation",
        "ComBat, pooled estimates for the external scanners",
        "ComBat adapted to the external scanners",
    ]
    numbers = [f"{c} {k}" for c in ("VC", "EV") for k in
               ("AUC", "AUC low", "AUC high", "between-scanner share")]  # fmt: skip
    assert np.isfinite(table[numbers].to_numpy(float)).all()
    assert ((table[numbers[:3]] >= 0) & (table[numbers[:3]] <= 1)).all().all()
    # the share expected without any scanner effect, (k - 1) / (n - 1): from the cohorts' files
    ev = pd.read_csv(out / "external" / "cohort.csv")
    assert (table["EV between-scanner share by chance"] == 2 / (len(ev) - 1)).all()
    vc = result.tables["table5"].query("cohort == 'VC'")["n"].iloc[0]
    assert table["VC between-scanner share by chance"].between(1 / (vc - 1), 6 / (vc - 1)).all()
    share = table["EV between-scanner share"]
    raw, pooled, adapted = share.to_numpy()
    # the mechanism: adapted to the EV scanners, their features' between-scanner share falls;
    # the pooled estimates (one affine map for every unseen scanner) leave it as it was raw
    assert adapted < raw
    assert pooled == pytest.approx(raw, rel=1e-6)
    # the VC is harmonised alike in the two ComBat rows
    vc = table["VC between-scanner share"]
    assert vc.iloc[1] == pytest.approx(vc.iloc[2], rel=1e-9)
    # the radiomics model without harmonisation is the demo's own: Table 5's radiomics AUCs
    table5 = result.tables["table5"].set_index(["model", "cohort"])
    for cohort in ("VC", "EV"):
        assert table.loc["no harmonisation", f"{cohort} AUC"] == pytest.approx(
            table5.loc[("Radiomics model", cohort), "auc"]
        ), cohort
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "The effect of harmonisation" in report
    assert "Only the radiomics model is refitted" in report and "eta squared" in report
    assert "between-scanner share" in console


def test_the_report_lists_the_external_scanners(small_study):
    out, _, _ = small_study
    report = (out / "report.html").read_text(encoding="utf-8")
    section = report[report.index("<h2>Simulated scanners</h2>") :]
    assert "EXTERNAL_SCANNERS" in section
    for name in EV_NAMES:
        assert f"<th>{name}</th>" in section, name


@pytest.mark.parametrize(
    "n_external, message",
    [(-1, "integer >= 0"), (True, "integer >= 0"), (2.5, "integer >= 0"),
     (5, "at least 2 patients on each of its 3 scanners (E1, E2, E3) and both classes")],
)  # fmt: skip
def test_a_bad_n_external_is_refused_before_any_work(tmp_path, n_external, message):
    with pytest.raises(ValueError, match=r"n_external") as err:
        run_study(tmp_path / "out", n_patients=14, n_external=n_external)
    assert message in str(err.value)
    assert list(tmp_path.iterdir()) == []  # not even the output folder


def test_the_external_cohort_needs_its_labels_and_a_cohort(tmp_path):
    X = pd.DataFrame({"ap": ["a.nii"]}, index=["P1"])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="X_external was given without y_external"):
        run_study(out, X, [1], X_external=X)
    with pytest.raises(ValueError, match="y_external was given without X_external"):
        run_study(out, X, [1], y_external=[1])
    with pytest.raises(ValueError, match="X_external needs X"):
        run_study(out, X_external=X, y_external=[1])
    with pytest.raises(ValueError, match="with your own cohort give X_external"):
        run_study(out, X, [1], n_external=6)
    assert list(tmp_path.iterdir()) == []


def test_with_and_without_harmonisation_copy_the_branch_settings():
    branch = make_radiomics_branch(cv=2, random_state=3)
    combat = with_harmonisation(branch)
    assert [n for n, _ in combat.steps] == [n for n, _ in make_radiomics_branch(
        harmonize=True).steps]  # fmt: skip
    params = combat.get_params()
    assert params["extract__passthrough"] == ("scanner",) and params["select__cv"] == 2
    assert params["harmonize__batch_column"] == "scanner" and params["select__random_state"] == 3
    back = without_harmonisation(combat)
    assert back.get_params()["extract__passthrough"] == ()
    assert [n for n, _ in back.steps] == [n for n, _ in branch.steps]


def test_the_between_scanner_share():
    rng = np.random.default_rng(0)
    batch = np.repeat(["S1", "S2", "S3"], 20)
    shift = pd.Series({"S1": 0.0, "S2": 2.0, "S3": -1.0})[batch].to_numpy()
    noise = rng.normal(size=(60, 2))
    features = pd.DataFrame({"shifted": noise[:, 0] + shift, "plain": noise[:, 1],
                             "constant": np.ones(60)})  # fmt: skip
    share = between_batch_share(features, batch)
    assert list(share.index) == ["shifted", "plain"]  # the constant feature has no variance
    assert share["shifted"] > 0.5 > 0.1 > share["plain"] >= 0
    # one affine map for every patient leaves it unchanged
    pd.testing.assert_series_equal(between_batch_share(3 * features - 7, batch), share)
    with pytest.raises(ValueError, match="two batches"):
        between_batch_share(features, ["S1"] * 60)
    features.iloc[4, 0] = np.nan
    with pytest.raises(ValueError, match="column 'shifted'"):
        between_batch_share(features, batch)


def test_a_users_external_cohort_is_checked_as_the_cohort_is(small_study, tmp_path):
    from p53radiomics.exceptions import CohortError
    from p53radiomics.io import read_cohort_csv

    out, _, _ = small_study
    X, y = read_cohort_csv(out / "cohort" / "cohort.csv", label="p53")
    X_ev, y_ev = read_cohort_csv(out / "external" / "cohort.csv", label="p53")
    X_ev.loc[X_ev.index[1], "ltd"] = np.nan  # a clinical predictor the model reads
    with pytest.raises(CohortError, match=rf"patient '{X_ev.index[1]}', column 'ltd'"):
        run_study(tmp_path / "out", X, y, X_external=X_ev, y_external=y_ev, n_jobs=1)
    # refused before any preprocessing
    assert not (tmp_path / "out" / "cache").exists()
