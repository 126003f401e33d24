"""The study as one job (:func:`run_study`), a sequence of named stages. The external validation of
a fitted model (:func:`evaluate_model`) and the study's external cohort are in ``_external``, the
harmonisation's effect in ``_harmonisation``."""

import functools
import itertools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ..exceptions import CohortError
from ..feature_selection._lasso import MIN_PER_CLASS
from ..io import DEFAULT_PHASES
from ..pipeline import branch_scores, fit_thresholds, radiomics_extractor
from ._cohort import prepare_cohort
from ._external import (
    EXTERNAL,
    EXTERNAL_STAGES,
    check_external_arguments,
    default_n_external,
    external_cohort_stage,
    external_random_state,
    external_scores_stage,
)
from ._figures import gradcam_figures, study_figures
from ._harmonisation import harmonisation_stage
from ._profiles import PREOPERATIVE_COLUMNS, profile_pipeline, resolve_profile
from ._reproducibility import reproducibility_stage
from ._tables import (
    STAGE_NOTE,
    StageClock,
    cnn_comparison,
    performance_tables,
    print_stages,
    print_summary,
    scanner_section,
    stage_table,
    table1,
    table2,
)

__all__ = ["StudyResult", "run_study"]


@dataclass
class StudyResult(Mapping):
    """What :func:`run_study` returns: its tables, the fitted combined model, timings, skipped
    patients, figures and what each stage of the run cost.

    Also a read-only mapping, as earlier versions returned a dict: ``result["table5"]``,
    ``result["model"]``, ``result["timings"]``, ``result["skipped"]``, ``dict(result)``.

    Attributes
    ----------
    tables : dict of str to pandas.DataFrame or None
        ``table1`` ... ``table5``, ``delong`` (with an external cohort, Table 5 and ``delong``
        have its ``EV`` rows), ``harmonisation_effect`` (with an external cohort:
        :func:`~p53radiomics.study.harmonisation_effect`'s table), ``reproducibility`` (each
        feature's ICC between the repeated ROIs) and ``robustness`` (the radiomics model with
        and without the robustness filter); ``table3`` or ``table4`` is ``None`` where the
        profile compares no CNN in that mode, the last two where the cohort has no repeated ROIs.
    model : Pipeline
        The combined model fitted on the training cohort, with its decision thresholds
        (:func:`~p53radiomics.pipeline.decision_thresholds`).
    timings : dict of str to float
        Wall seconds per stage: ``cohort`` (where generated), ``preprocessing``, ``radiomics``,
        ``cnn_comparison`` (Tables 3-4), ``combined_model``, ``evaluation``,
        ``external`` (the external cohort's stages, where there is one), ``harmonisation``
        (its harmonisation table), ``reproducibility`` (where the cohort has repeated ROIs),
        ``figures``, ``report`` and ``total``.
    skipped : pandas.DataFrame
        Patients left out (index: patient id; ``column``, ``reason``).
    figures : dict of str to (path, caption)
        The PNG files written.
    stages : pandas.DataFrame or None
        One row per stage (each CNN of Tables 3-4 its own) and a ``total`` row: ``wall_s``,
        ``cpu_s``, ``peak_rss_mib``, ``peak_rss_all_mib``, ``wall_s_per_patient``,
        ``cpu_s_per_patient``; ``stages.attrs["n_patients"]`` is the run's number of patients.
        What each column measures is written in ``settings.json`` (``stage_columns``) and under
        the report's table. Not one of the mapping's keys.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.study import StudyResult
    >>> result = StudyResult(
    ...     tables={"table5": pd.DataFrame({"auc": [0.82]})}, model=None, timings={"cohort": 1.5},
    ...     skipped=pd.DataFrame(columns=["column", "reason"]),
    ... )
    >>> result["table5"]["auc"].tolist(), sorted(result)
    ([0.82], ['model', 'skipped', 'table5', 'timings'])
    >>> result.timings["cohort"]
    1.5
    """

    tables: dict
    model: object
    timings: dict
    skipped: pd.DataFrame
    figures: dict = field(default_factory=dict)
    stages: pd.DataFrame = None

    def _items(self):
        return {
            **self.tables,
            "model": self.model,
            "timings": self.timings,
            "skipped": self.skipped,
        }

    def __getitem__(self, key):
        return self._items()[key]

    def __iter__(self):
        return iter(self._items())

    def __len__(self):
        return len(self._items())


@dataclass
class _Split:
    """The training (TC) and validation (VC) cohorts."""

    tc: pd.Index
    vc: pd.Index
    X_tc: pd.DataFrame
    X_vc: pd.DataFrame
    y_tc: object
    y_vc: object


def _cohort_stage(out, X, y, *, n_patients, voxel_scale, random_state, n_jobs, n_repeated, clock):
    """The cohort given, or the synthetic one generated into ``out/cohort``."""
    if X is not None:
        return X, y
    from ..datasets import make_synthetic_cohort

    clock.log(f"generating a synthetic cohort of {n_patients} patients")
    with clock.stage("cohort", "cohort"):
        return make_synthetic_cohort(out / "cohort", n_patients=n_patients, n_jobs=n_jobs,
                                     random_state=random_state, voxel_scale=voxel_scale,
                                     n_repeated=n_repeated)  # fmt: skip


def _split_stage(X, y, test_size, random_state, cv, clock):
    """The stratified split into TC and VC, refused where the TC is too small for `cv` folds."""
    from sklearn.model_selection import train_test_split

    y = pd.Series(y, index=X.index)
    tc, vc = train_test_split(X.index, test_size=test_size, stratify=y, random_state=random_state)
    split = _Split(tc, vc, X.loc[tc], X.loc[vc], y.loc[tc].to_numpy(), y.loc[vc].to_numpy())
    _check_training_folds(split.y_tc, cv)
    clock.log(f"split: {len(tc)} training (TC), {len(vc)} validation (VC) patients")
    return split


def _in_training_fold(n, cv):
    """Patients of a class of `n` left in the smallest training fold of a stratified `cv`-fold
    split (the test folds take ``ceil(n / cv)`` of them at most)."""
    return n - -(-n // cv)


def _check_training_folds(y_tc, cv):
    """Refuse, before any image work, a TC whose `cv`-fold stacking leaves a training fold fewer
    patients of a class than the LASSO steps fitted on it need (they would fail minutes later)."""
    counts = pd.Series(y_tc).value_counts().reindex([0, 1], fill_value=0)
    smallest = int(counts.min())
    left = _in_training_fold(smallest, cv)
    if left < MIN_PER_CLASS:
        need = next(n for n in itertools.count(1) if _in_training_fold(n, cv) >= MIN_PER_CLASS)
        name = "P53-mutated" if counts[1] <= counts[0] else "wild-type"
        raise CohortError(
            f"the training cohort (TC) has {smallest} {name} patients: its {cv}-fold stacking "
            f"leaves {left} of them in a training fold, and the LASSO steps fitted there need "
            f"{MIN_PER_CLASS}; the TC needs {need} patients of each class or more (a larger cohort)"
        )


def _cache_stage(model, X, clock):
    """Every case preprocessed and its radiomics extracted once, into the model's cache."""
    clock.log("preprocessing every case (N4, crop, resampling, normalisation; cached)")
    with clock.stage("preprocessing", "preprocessing"):
        Xp = model.named_steps["preprocess"].transform(X)
    clock.log("extracting radiomics features (cached)")
    with clock.stage("radiomics extraction", "radiomics"):
        radiomics_extractor(model).transform(Xp)
    return Xp


def _cnn_stage(profile, Xp, split, phases, random_state, clock):
    """Tables 3 and 4, each model a stage."""
    modes = ", ".join(m.upper() for m in profile.modes)
    clock.log(f"comparing CNNs: {', '.join(profile.backbones)} in {modes} modes")
    comparison = cnn_comparison(
        profile,
        Xp,
        split,
        phases,
        random_state,
        clock.log,
        stage=lambda name: clock.stage(name, "cnn_comparison"),
    )
    return {"table3": comparison.get("mc"), "table4": comparison.get("ff")}


def _combined_stage(model, split, clock):
    """The combined model fitted on the TC, its thresholds chosen there; Table 5, DeLong tests."""
    clock.log("fitting the combined model on the TC (out-of-fold stacking of the three models)")
    with clock.stage("combined model", "combined_model"):
        model.fit(split.X_tc, split.y_tc)
    clock.log("evaluating the four models on the TC and the VC")
    with clock.stage("evaluation", "evaluation"):
        scores = {"TC": branch_scores(model, split.X_tc)}
        scores["VC"], Xp_vc = branch_scores(model, split.X_vc, return_preprocessed=True)
        # the Youden thresholds chosen on the TC travel with the model, for external validation
        thresholds = fit_thresholds(model, split.X_tc, split.y_tc, scores=scores["TC"])
        labels = {"TC": split.y_tc, "VC": split.y_vc}
        tables = performance_tables(labels, scores, thresholds)
    return tables, labels, scores, Xp_vc, thresholds


def _external_stages(model, Xp, split, external, labels, scores, thresholds, clock):
    """The external cohort scored (Table 5 and the DeLong tests of every cohort) and the
    harmonisation's effect on the radiomics model in the VC and the EV."""
    X_ev, y_ev, _ = external
    tables, Xp_ev = external_scores_stage(model, X_ev, y_ev, labels, scores, thresholds, clock)
    cohorts = {"VC": (Xp.loc[split.vc], split.y_vc), EXTERNAL: (Xp_ev, y_ev)}
    tables.update(harmonisation_stage(model, Xp.loc[split.tc], split.y_tc, cohorts, clock,
                                      external=EXTERNAL))  # fmt: skip
    return tables


def _settings(profile, X, random_state, clinical, external):
    """The run's settings, as ``settings.json`` and the report list them."""
    settings = {
        "profile": profile.name,
        **{k: v for k, v in asdict(profile).items() if k not in ("name", "notes")},
    }
    settings.update(n_patients=len(X), random_state=random_state, clinical_columns=clinical)
    if external is not None:
        settings.update(n_external=len(external[0]))
    return settings


def _write_outputs(out, *, tables, model, figures, profile, settings, skipped, clock, make_card,
                   sections=()):  # fmt: skip
    """The tables (CSV), the model and its card (``make_card()``), the report and the settings
    with the stage table; the stage table is also :func:`run_study`'s ``stages``."""
    title = "P53 mutation in HCC from three-phase DCE-MRI: the study on " + (
        "the synthetic cohort" if (out / "cohort").exists() else "your cohort"
    )
    report = dict(title=title, tables=tables, figures=figures, profile=profile, skipped=skipped)
    clock.log("writing the tables, the model, its card and the report")
    with clock.stage("report", "report"):
        # imported and made in the stage, whose cost they are (skops takes about a second)
        from ..model_card import CARD_KEY, card_report_sections, write_card_files
        from ..persistence import save_model
        from ..report import write_report

        card = make_card()
        report["sections"] = [*sections, *card_report_sections(card)]
        for name, table in tables.items():
            if table is not None:
                table.to_csv(out / f"{name}.csv")
        save_model(model, out / "model.p53", metadata={CARD_KEY: card})
        write_card_files(out, card)
        write_report(out / "report.html", settings=settings, **report)
    external = (
        {n: settings["n_external"] for n in EXTERNAL_STAGES} if "n_external" in settings else {}
    )
    stages = stage_table(clock, settings["n_patients"], patients=external)
    stages.to_csv(out / "stages.csv")
    settings = {
        **settings,
        "stages": stages.reset_index().to_dict("records"),
        "stage_columns": STAGE_NOTE,
    }
    (out / "settings.json").write_text(
        json.dumps(settings, indent=2, default=str), encoding="utf-8"
    )
    # written again with the whole stage table, its own stage included (it takes milliseconds)
    write_report(out / "report.html", settings=settings, stages=stages, **report)
    return stages


def _study_card(model, tables, labels, scores, profile, skipped, on_error, test_size, seed, *,
                generated, external=None):  # fmt: skip
    """The model card of the study's combined model: Table 5 on the TC, the VC (and the EV) as
    reported."""
    from ..model_card import missing_data_note, model_card

    source = ("synthetic cohort of p53radiomics.datasets.make_synthetic_cohort (no patient data; "
              f"random_state={seed})") if generated else None  # fmt: skip
    split = (f"random stratified split (random_state={seed}) into a training cohort (TC, "
             f"{1 - test_size:.0%}) and a held-out validation cohort (VC, {test_size:.0%})")  # fmt: skip
    cohorts = {"TC": "training cohort (thresholds chosen here: apparent performance)",
               "VC": "held-out validation cohort (internal validation, same source)"}  # fmt: skip
    if external is not None:
        scanners = ", ".join(sorted(map(str, external[0]["scanner"].unique()))) if (
            "scanner" in external[0]) else "not recorded"  # fmt: skip
        split += (f"; an external validation cohort ({EXTERNAL}, {len(external[0])} patients)"
                  + (f", generated with random_state={external_random_state(seed)}" if generated else ""))  # fmt: skip
        cohorts[EXTERNAL] = (
            f"external validation cohort (scanners {scanners}"
            + (", none of them in the TC or the VC" if generated else "")
            + "), at the TC's thresholds"
        )
    limitations = [*profile.notes] + (["Trained on a synthetic cohort: its figures say nothing "
                                       "about patients."] if generated else [])  # fmt: skip
    return model_card(
        model, table5=tables["table5"], labels=labels, scores=scores,
        table1=tables["table1"]["TC"], data_source=source,
        missing_data=missing_data_note(skipped, on_error), validation_scheme=split,
        cohorts=cohorts, settings={"profile": profile.name}, limitations=limitations,
    )  # fmt: skip


def run_study(
    out,
    X=None,
    y=None,
    *,
    profile="quick",
    n_patients=320,
    voxel_scale=1.0,
    random_state=0,
    n_jobs=-1,
    test_size=0.3,
    phases=DEFAULT_PHASES,
    clinical_columns=PREOPERATIVE_COLUMNS,
    on_error="raise",
    pos_label=None,
    n_repeated=None,
    n_external=None,
    X_external=None,
    y_external=None,
):
    """Run the study end to end and write its tables, figures, model and report under `out`.

    Without `X`, a synthetic cohort of `n_patients` is generated into ``out/cohort``. The cohort is
    split 7:3 (stratified) into a training (TC) and a validation cohort (VC); then Table 1
    (characteristics by class in each cohort), Table 2 (univariable and multivariable odds ratios
    in the TC), the CNN comparison over backbones in MC and FF modes (Tables 3 and 4), the
    clinical, radiomics, DL and combined models (Table 5) with DeLong tests, the nomogram,
    calibration and decision curves, and Grad-CAM panels. With an external cohort (EV: the synthetic
    one, generated from scanners absent from the development cohort, or `X_external`), Table 5,
    the DeLong tests, the figures and the model card have its rows too, at the TC's thresholds,
    and the ``harmonisation_effect`` table shows the radiomics model without and with ComBat
    harmonisation in the VC and the EV.

    Parameters
    ----------
    out : str or os.PathLike
        Output folder: ``report.html``, ``table*.csv``, ``*.png``, ``model.p53`` (the fitted
        model with its card, :func:`~p53radiomics.save_model`), ``model_card.md``,
        ``checklist.csv``, ``cache/``, ``settings.json`` and ``stages.csv`` (the stage table,
        written as each stage ends).
    X, y : pandas.DataFrame and pandas.Series, default=None
        A cohort table and its labels; ``None`` generates the synthetic cohort.
    profile : {"quick", "full"} or Profile, default="quick"
        Settings (:data:`PROFILES`): ``"quick"`` fits a 2-core CPU in minutes, ``"full"`` is the
        study's (for a GPU).
    n_patients : int, default=320
        Size of the synthetic cohort.
    voxel_scale : float, default=1.0
        The synthetic cohort's `voxel_scale` (see :func:`~p53radiomics.datasets.make_synthetic_cohort`).
    random_state : int, default=0
        Seeds the cohort, the split and every model.
    n_jobs : int, default=-1
        Cases preprocessed and extracted in parallel.
    test_size : float, default=0.3
        Fraction of the validation cohort.
    phases : sequence of str
        Phases used.
    clinical_columns : sequence of str
        Candidate predictors of the clinical model (present columns only).
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves out patients with a bad file or value and lists them in the report.
    pos_label : object, default=None
        The label of the P53-mutated class, where `y` is not 0/1 or booleans (see
        :func:`prepare_cohort`).
    n_repeated : int or None, default=None
        Patients of the synthetic cohort whose ROIs are drawn again (``None``: the study's share,
        30 of 320); with 2 or more, the report has the ICCs between readers and sessions.
    n_external : int or None, default=None
        Patients of the synthetic external cohort (EV), generated with the synthetic cohort into
        ``out/external`` from :data:`~p53radiomics.datasets.EXTERNAL_SCANNERS` (none of which the
        development cohort has), seeded by ``random_state + 1``. ``None``: a fifth of
        `n_patients` (64 for 320; at least 6), which keeps the demo within its time budget;
        ``0``: no external cohort. Otherwise at least 2 patients per external scanner (6):
        fewer is refused. With `X` given, only ``None`` or ``0``.
    X_external, y_external : pandas.DataFrame and pandas.Series, default=None
        Your external cohort and its labels, with `X`: checked as `X` is (the clinical columns
        included), scored at the TC's thresholds. The harmonisation table needs its ``scanner``
        column.

    Returns
    -------
    results : StudyResult
        The tables (DataFrames) by name (``harmonisation_effect`` with an external cohort, see
        :func:`~p53radiomics.study.harmonisation_effect`), the fitted combined model, the
        timings, the skipped patients and the stage table (``results.stages``: wall time, CPU time and peak memory of
        each stage, also in ``settings.json``, at the end of ``report.html`` and of the console
        output, with seconds per patient to extrapolate a short run); also readable as the dict earlier versions returned (``results["table5"]``,
        ``results["model"]``, ``results["timings"]``, ``results["skipped"]``).
    """
    clock = StageClock()
    try:
        profile = resolve_profile(profile)
        n_external = check_external_arguments(n_external, X, X_external, y_external)
        n_external = default_n_external(n_patients) if n_external is None else n_external
        out = Path(out).resolve()  # the model stores its cache folder: never relative to a cwd
        out.mkdir(parents=True, exist_ok=True)
        clock.path = out / "stages.csv"
        X_given = X
        X, y = _cohort_stage(out, X, y, n_patients=n_patients, voxel_scale=voxel_scale,
                             random_state=random_state, n_jobs=n_jobs, n_repeated=n_repeated,
                             clock=clock)  # fmt: skip
        with clock.stage("checks, split, Tables 1-2"):
            X, y, skipped = prepare_cohort(X, y, phases, on_error=on_error, pos_label=pos_label)
            if len(skipped):
                clock.log(f"skipped {len(skipped)} patients: " + ", ".join(map(str, skipped.index)))
            clinical = [c for c in clinical_columns if c in X.columns]
            split = _split_stage(X, y, test_size, random_state, profile.cv, clock)
            tables = {
                "table1": table1(split.X_tc, split.y_tc, split.X_vc, split.y_vc),
                "table2": table2(split.X_tc, split.y_tc),
            }
        external = external_cohort_stage(
            out, X_external, y_external, n_external=n_external, voxel_scale=voxel_scale,
            random_state=random_state, n_jobs=n_jobs, phases=phases, required_columns=clinical,
            on_error=on_error, pos_label=pos_label, clock=clock,
        )  # fmt: skip
        model = profile_pipeline(
            profile,
            clinical,
            phases=phases,
            cache_dir=out / "cache",
            n_jobs=n_jobs,
            random_state=random_state,
        )
        Xp = _cache_stage(model, X, clock)
        tables.update(_cnn_stage(profile, Xp, split, phases, random_state, clock))
        model_tables, labels, scores, Xp_vc, thresholds = _combined_stage(model, split, clock)
        tables.update(model_tables)
        if external is not None:
            tables.update(_external_stages(model, Xp, split, external, labels, scores,
                                           thresholds, clock))  # fmt: skip
            skipped = pd.concat([skipped, external[2]]) if len(external[2]) else skipped
        repro = reproducibility_stage(out, model, Xp, split, scores, phases, clock)
        tables.update(repro.tables)
        make_card = functools.partial(  # called in the report's stage
            _study_card, model, tables, labels, scores, profile, skipped, on_error, test_size,
            random_state, generated=X_given is None, external=external)  # fmt: skip

        clock.log("drawing figures")
        with clock.stage("figures", "figures"):
            figures = study_figures(out, labels, scores, random_state, model=model, reference="TC")
            gradcam_ids = list(split.vc[: profile.n_gradcam])
            figures.update(gradcam_figures(out, model, Xp_vc, gradcam_ids, phases))
        figures.update(repro.figures)
        settings = _settings(profile, X, random_state, clinical, external)
        X_ev = None if external is None else external[0]
        scanners = [scanner_section(X, X_ev)] if X_given is None else []
        stages = _write_outputs(out, tables=tables, model=model, figures=figures, profile=profile,
                                settings=settings, skipped=skipped, clock=clock, make_card=make_card,
                                sections=[repro.section, *scanners])  # fmt: skip
    finally:
        clock.close()
    print_summary(tables, repro.summary)
    clock.log(f"done: report in {out / 'report.html'}")
    print_stages(stages)
    return StudyResult(tables, model, clock.timings, skipped, figures, stages)
