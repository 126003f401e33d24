"""External validation: the study's synthetic external site (the ``EV`` cohort of
:func:`~p53radiomics.study.run_study`: its size, generation, checks and scores) and
:func:`evaluate_model`, the external validation of a fitted model on a user's cohort."""

import warnings
from numbers import Integral
from pathlib import Path

import pandas as pd

from ..exceptions import UnseenBatchWarning
from ..io import DEFAULT_PHASES
from ..pipeline import (
    branch_scores,
    decision_thresholds,
    fitted_clinical_columns,
    pooled_harmonisation,
    radiomics_extractor,
    use_cache,
)
from ._cohort import prepare_cohort
from ._figures import study_figures
from ._tables import delong_table, model_table, performance_tables

__all__ = [
    "EXTERNAL",
    "EXTERNAL_STAGES",
    "MIN_PER_EXTERNAL_SCANNER",
    "check_external_arguments",
    "default_n_external",
    "evaluate_model",
    "external_cohort_stage",
    "external_random_state",
    "external_scores_stage",
]

#: The external cohort's name in Table 5, the DeLong table, the figures and the model card.
EXTERNAL = "EV"
#: The stages of the external cohort (its seconds per patient are per external patient).
EXTERNAL_STAGES = ("external cohort", "external checks", "external preprocessing",
                   "external radiomics extraction", "external evaluation")  # fmt: skip
#: Patients each external scanner needs at least: ComBat adapted to a scanner estimates its
#: variance (:func:`~p53radiomics.harmonization.adapt_to_new_batches`).
MIN_PER_EXTERNAL_SCANNER = 2


def _external_scanners():
    from ..datasets import EXTERNAL_SCANNERS

    return EXTERNAL_SCANNERS


def _minimum():
    return MIN_PER_EXTERNAL_SCANNER * len(_external_scanners())


def default_n_external(n_patients):
    """The synthetic external cohort's default size: a fifth of the development cohort (64 for
    the study's 320), and at least 2 patients per external scanner (6)."""
    return max(_minimum(), n_patients // 5)


def external_random_state(random_state):
    """The external cohort's seed: ``random_state + 1`` (the development cohort's is
    `random_state`)."""
    return random_state + 1


def check_external_arguments(n_external, X, X_external, y_external):
    """The external cohort `run_study` is asked for, checked before any work: its size for the
    synthetic cohort (``None``: :func:`default_n_external`), or a user's ``X_external`` with its
    labels. Returns `n_external` (0 where no cohort is generated)."""
    if X_external is not None and y_external is None:
        raise ValueError(
            "X_external was given without y_external: the external cohort's labels are needed "
            "for its Table 5 rows"
        )
    if y_external is not None and X_external is None:
        raise ValueError("y_external was given without X_external")
    if X is not None or X_external is not None:
        if X_external is not None and X is None:
            raise ValueError(
                "X_external needs X: with the synthetic cohort (X=None) the external cohort is "
                "generated too (n_external)"
            )
        if n_external not in (None, 0):
            raise ValueError(
                f"n_external={n_external!r} sizes the synthetic external cohort, generated with "
                "the synthetic cohort only (X=None); with your own cohort give X_external and "
                "y_external"
            )
        return 0
    if n_external is None:
        return None
    if isinstance(n_external, bool) or not isinstance(n_external, Integral) or n_external < 0:
        raise ValueError(f"n_external must be an integer >= 0 or None, got {n_external!r}")
    if 0 < n_external < _minimum():
        names = ", ".join(s.name for s in _external_scanners())
        raise ValueError(
            f"n_external={n_external} is too small: the external cohort needs at least "
            f"{MIN_PER_EXTERNAL_SCANNER} patients on each of its {len(_external_scanners())} "
            f"scanners ({names}) and both classes, so 0 (no external cohort) or at least "
            f"{_minimum()}"
        )
    return int(n_external)


def _check_generated(X, y):
    """Each external scanner has 2 patients or more and both classes are present, else a
    ValueError (the generator deals each class out to the scanners in turn)."""
    counts = X["scanner"].value_counts()
    few = counts[counts < MIN_PER_EXTERNAL_SCANNER]
    if len(few) or len(counts) < len(_external_scanners()) or y.nunique() < 2:
        raise ValueError(
            f"the external cohort of {len(X)} patients has patients per scanner "
            f"{counts.to_dict()} and classes {sorted(y.unique().tolist())}: it needs at least "
            f"{MIN_PER_EXTERNAL_SCANNER} per scanner and both classes (a larger n_external)"
        )


def external_cohort_stage(out, X_external, y_external, *, n_external, voxel_scale, random_state,
                          n_jobs, phases, required_columns, on_error, pos_label, clock):  # fmt: skip
    """The external cohort: generated into ``out/external`` from
    :data:`~p53radiomics.datasets.EXTERNAL_SCANNERS` (stage ``external cohort``) or the user's,
    then checked as the development cohort is (stage ``external checks``).

    Returns ``(X, y, skipped)``, or ``None`` where there is no external cohort.
    """
    if X_external is None and not n_external:
        return None
    label_name = "y_external"  # the parameter, in an error about the user's labels
    if X_external is None:
        from ..datasets import make_synthetic_cohort

        label_name = None

        seed = external_random_state(random_state)
        clock.log(f"generating a synthetic external cohort ({EXTERNAL}) of {n_external} patients "
                  "on scanners absent from the development cohort")  # fmt: skip
        with clock.stage("external cohort", "external"):
            X_external, y_external = make_synthetic_cohort(
                out / "external", n_patients=n_external, n_jobs=n_jobs, random_state=seed,
                voxel_scale=voxel_scale, scanners=_external_scanners(), n_repeated=0,
            )  # fmt: skip
            _check_generated(X_external, y_external)
    with clock.stage("external checks", "external"):
        X_ev, y_ev, skipped = prepare_cohort(
            X_external, y_external, phases, required_columns=required_columns,
            on_error=on_error, pos_label=pos_label, label_name=label_name,
        )  # fmt: skip
    if len(skipped):
        clock.log(
            f"skipped {len(skipped)} external patients: " + ", ".join(map(str, skipped.index))
        )
        skipped = skipped.assign(reason=f"external cohort ({EXTERNAL}): " + skipped["reason"])
    return X_ev, y_ev, skipped


def external_scores_stage(model, X_ev, y_ev, labels, scores, thresholds, clock):
    """The fitted model on the external cohort: its cases preprocessed and extracted into the
    model's cache (stages ``external preprocessing``, ``external radiomics extraction``), then
    scored, at the TC's `thresholds`, beside the other cohorts (``external evaluation``).

    `labels` and `scores` (by cohort) gain the ``EV`` cohort's; returns ``(tables,
    preprocessed)``: Table 5 and the DeLong tests of every cohort, and the external cohort's
    preprocessed table.
    """
    clock.log(f"preprocessing and extracting the external cohort ({EXTERNAL}, cached)")
    with clock.stage("external preprocessing", "external"):
        Xp_ev = model.named_steps["preprocess"].transform(X_ev)
    with clock.stage("external radiomics extraction", "external"):
        radiomics_extractor(model).transform(Xp_ev)
    clock.log(f"evaluating the four models on the external cohort ({EXTERNAL})")
    with clock.stage("external evaluation", "external"):
        with warnings.catch_warnings():  # a ComBat step's pooled estimates: listed in the report
            warnings.simplefilter("ignore", UnseenBatchWarning)
            scores[EXTERNAL] = branch_scores(model, X_ev)
        labels[EXTERNAL] = y_ev
        tables = performance_tables(labels, scores, thresholds)
    return tables, Xp_ev


def evaluate_model(
    model, X, y, out, *, phases=DEFAULT_PHASES, on_error="raise", random_state=0, pos_label=None,
    card=None, cache_dir=None,
):  # fmt: skip
    """External validation of a fitted combined model: Table 5, DeLong tests, figures, report.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`~p53radiomics.make_paper_pipeline` model (e.g. ``joblib.load``-ed).
    X, y : pandas.DataFrame and pandas.Series
        The external cohort and its labels.
    out : str or os.PathLike
        Output folder.
    phases : sequence of str
        Phases of the model.
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves out patients with a bad file or value and lists them in the report.
    random_state : int, default=0
        Seeds the bootstrap bands of the ROC figure.
    pos_label : object, default=None
        The label of the P53-mutated class, where `y` is not 0/1 or booleans (see
        :func:`prepare_cohort`).
    card : dict, default=None
        The model's card (:func:`~p53radiomics.model_card.read_model_card`): the external
        cohort's performance and calibration are added to it, in the report, ``model_card.md``
        and ``checklist.csv``; ``None`` makes a card of this evaluation alone.
    cache_dir : str or os.PathLike, default=None
        The per-case cache of the preprocessing and the radiomics extraction (``None``:
        ``out/cache``). A cache shared by several evaluations of one cohort preprocesses and
        extracts each case once; entries are keyed by file contents and settings, so sharing it
        is safe.

    Returns
    -------
    results : dict
        ``table5``, ``delong``, ``skipped``, ``card``; and ``harmonisation``, the patients whose scanner
        the model's ComBat step (``harmonize=True``) harmonised with its pooled estimates, where
        there are any.
    """
    from ..model_card import (
        card_report_sections,
        extend_model_card,
        missing_data_note,
        model_card,
        write_card_files,
    )
    from ..report import write_report

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    X, y, skipped = prepare_cohort(
        X,
        y,
        phases,
        required_columns=fitted_clinical_columns(model),
        on_error=on_error,
        pos_label=pos_label,
    )
    model = use_cache(model, out / "cache" if cache_dir is None else cache_dir)
    with warnings.catch_warnings():
        # the patients harmonised with pooled estimates are listed in the report instead
        warnings.simplefilter("ignore", UnseenBatchWarning)
        scores = {"External": branch_scores(model, X)}
    labels = {"External": y}
    # the decision thresholds are the ones stored with the model, chosen on its training cohort
    tables = {
        "table5": model_table(labels, scores, decision_thresholds(model)),
        "delong": pd.DataFrame(delong_table(y, scores["External"], "External")),
    }
    pooled = pooled_harmonisation(model, X)
    if pooled is not None and len(pooled):
        tables["harmonisation"] = pooled
    figures = study_figures(out, labels, scores, random_state)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv")
    external = {"External": "external validation cohort, at the training cohort's thresholds"}
    if card is None:
        card = model_card(model, table5=tables["table5"], labels=labels, scores=scores,
                          cohorts=external, missing_data=missing_data_note(skipped, on_error))  # fmt: skip
    else:
        card = extend_model_card(card, table5=tables["table5"], labels=labels, scores=scores,
                                 cohorts=external)  # fmt: skip
    write_card_files(out, card)
    write_report(
        out / "report.html",
        title="External validation of a fitted P53 model",
        tables=tables,
        figures=figures,
        profile=None,
        settings={"n_patients": len(X)},
        skipped=skipped,
        timings={},
        sections=card_report_sections(card),
    )
    return {**tables, "skipped": skipped, "card": card}
