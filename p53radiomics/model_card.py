"""A model card: what a fitted combined model is for, what it was trained on and how well it did.

Built when a model is fitted (:func:`model_card`; :func:`training_model_card` for ``p53radiomics
fit``), stored in the model file (``save_model(model, path, metadata={"model_card": card})``),
printed by ``p53radiomics card MODEL`` (:func:`format_model_card`) and shown as a section of the
report (:func:`model_card_sections`). A card is a dict of what JSON holds.

Its figures are never computed here from anything but what the caller computed for the report:
performance is the report's Table 5 row for row, calibration that of the combined model's scores
(:func:`~p53radiomics.metrics.calibration_summary`), Table 1 the report's. What a run did not
compute (a cross-validated estimate, an external cohort) is said to be missing, never estimated.
"""

import datetime

import numpy as np
import pandas as pd

from .fusion import negative_branch_weights

__all__ = [
    "CARD_KEY",
    "card_report_sections",
    "extend_model_card",
    "format_model_card",
    "missing_data_note",
    "model_card",
    "model_card_sections",
    "read_model_card",
    "training_model_card",
    "write_card_files",
]

#: The key of the model card in a model file's metadata (:func:`~p53radiomics.save_model`).
CARD_KEY = "model_card"

INTENDED_USE = (
    "Research: the probability of P53 mutation in hepatocellular carcinoma (HCC) from preoperative "
    "three-phase DCE-MRI (the phases and masks listed under inputs) and clinical variables.",
    "Validation first: evaluate the model on your own labelled patients (p53radiomics evaluate) "
    "before reading its output for patients like them.",
)
NOT_INTENDED_USE = (
    "Clinical decisions for an individual patient: the model is not a medical device and has "
    "not been approved as one.",
    "Tumours other than HCC, other imaging (CT, other MRI sequences or phases), or masks drawn "
    "by another protocol than the training cohort's.",
    "Populations, scanners or centres unlike the training cohort's without an external "
    "validation there.",
)
GENERAL_LIMITATIONS = (
    "Decision thresholds were chosen on the training cohort (Youden) and are applied unchanged: "
    "sensitivity and specificity elsewhere differ where the prevalence or the scanners differ.",
    "Radiomics features depend on the scanner and protocol; the model was trained on the "
    "scanners of its training cohort only.",
    "The CNN sees one axial slice per phase (the largest ROI), not the whole tumour.",
)
#: The model's settings shown on the card, by ``get_params`` suffix.
SETTINGS = (
    "preprocess__spacing", "preprocess__normalization", "preprocess__shrink_factor",
    "preprocess__n_iterations", "preprocess__margin_mm", "fusion__cv",
    "fusion__radiomics__extract__params", "fusion__radiomics__decorrelate__threshold",
    "fusion__radiomics__decorrelate__method", "fusion__radiomics__select__cv",
    "fusion__radiomics__harmonize__batch_column", "fusion__deep__crop__margin",
    "fusion__deep__crop__size", "fusion__deep__crop__context_slices", "fusion__deep__cnn__backbone",
    "fusion__deep__cnn__mode", "fusion__deep__cnn__weights", "fusion__deep__cnn__n_components",
    "fusion__deep__cnn__max_epochs", "fusion__deep__cnn__batch_size", "fusion__deep__cnn__lr",
    "fusion__deep__cnn__augment", "fusion__deep__select__cv",
)  # fmt: skip
_PERFORMANCE = ["model", "cohort", "n", "threshold", "accuracy", "auc", "auc_low", "auc_high",
                "sensitivity", "specificity"]  # fmt: skip


def _plain(value):
    """``value`` as JSON holds it: numpy scalars as Python ones, NaN as None, others as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    return value if value is None or isinstance(value, str) else str(value)


def _frame(table):
    """A DataFrame as ``{"columns", "index", "data"}`` of text (MultiIndex labels joined by " / ")."""
    label = lambda v: " / ".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    return {
        "columns": [label(c) for c in table.columns],
        "index": [label(i) for i in table.index],
        "data": [["" if pd.isna(v) else str(v) for v in row] for row in table.to_numpy()],
    }


def _calibration(labels, scores):
    from .metrics import calibration_summary

    rows = []
    for cohort, y in labels.items():
        c = calibration_summary(y, scores[cohort]["combined"])
        rows.append({"model": "Combined model", "cohort": cohort, "n": len(y), "slope": c.slope,
                     "slope_low": c.slope_ci[0], "slope_high": c.slope_ci[1],
                     "intercept": c.intercept, "intercept_low": c.intercept_ci[0],
                     "intercept_high": c.intercept_ci[1], "brier": c.brier})  # fmt: skip
    return _plain(rows)


def _inputs(model, phases):
    from .pipeline import fitted_clinical_columns

    return {
        "phases": list(phases),
        "image_columns": list(phases),
        "mask_columns": [f"{p}_mask" for p in phases] + ["mask (serves every phase)"],
        "clinical_columns": fitted_clinical_columns(model),
        "label": "1 = P53-mutated, 0 = wild type",
        "images": "any format SimpleITK reads (NIfTI, NRRD, MHA, a DICOM series folder), or "
        "SimpleITK images; masks: non-zero voxels = tumour, same geometry as the image",
    }


def _contributions(model):
    """The fusion's final estimator: its coefficient on each branch's probability."""
    fusion = model.named_steps["fusion"]
    final = fusion.final_estimator_
    names = [name for name, est in fusion.named_estimators_.items() if est != "drop"]
    if not hasattr(final, "coef_"):
        return {"note": f"the final estimator ({type(final).__name__}) has no coefficients"}
    return {
        "estimator": type(final).__name__,
        "intercept": _plain(np.ravel(final.intercept_)[0]),
        "coefficients": dict(zip(names, _plain(np.ravel(final.coef_).tolist()), strict=True)),
        "note": "logistic regression on the branches' probabilities (0-1), fitted on their "
        "out-of-fold probabilities in the training cohort",
    }


def _inverted_branches(model):
    """A limitation naming the branches the fusion weighs negatively, if any."""
    negative = negative_branch_weights(model.named_steps["fusion"])
    if not negative:
        return []
    listed = ", ".join(f"{name} ({value:.3g})" for name, value in negative.items())
    return [
        f"The fusion weighs the scores of these branches negatively: {listed}. Their "
        "out-of-fold scores ranked the training patients against the label, or they overlap "
        "another branch; an overfit branch then ranks the training patients in reverse in the "
        "combined model, so its training-cohort figures say nothing of its validation ones."
    ]


def _settings(model, extra):
    params = model.get_params(deep=True)
    shown = {k: params[k] for k in SETTINGS if k in params}
    if "fusion__radiomics__extract__params" in shown and shown[
        "fusion__radiomics__extract__params"] is None:  # fmt: skip
        shown["fusion__radiomics__extract__params"] = "the study's feature set (the default)"
    return _plain({**shown, **(extra or {})})


def model_card(
    model, *, table5, labels=None, scores=None, table1=None, cohorts=None, data_source=None,
    missing_data=None, validation_scheme=None, settings=None, limitations=(), date=None,
    training_cohort="TC",
):  # fmt: skip
    """The model card of a fitted combined model, from the figures its run computed.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`~p53radiomics.make_paper_pipeline` model.
    table5 : pandas.DataFrame
        The run's Table 5 (:func:`~p53radiomics.metrics.diagnostic_table` rows): copied as the
        card's ``performance``, so that the card and the report show the same numbers.
    labels, scores : dict, default=None
        By cohort: the labels and :func:`~p53radiomics.pipeline.branch_scores` that Table 5 was
        computed from; the combined model's calibration is computed on each.
    table1 : pandas.DataFrame, default=None
        The training cohort's characteristics by class (Table 1's training part).
    cohorts : dict of str to str, default=None
        What each cohort of Table 5 is (e.g. ``{"TC": "training cohort, ..."}``).
    data_source, missing_data, validation_scheme : str, default=None
        Where the data came from, how patients with missing or bad data were handled, how the
        model was validated; ``None`` leaves them for the authors.
    settings : dict, default=None
        Settings of the run besides the model's own (e.g. the profile).
    limitations : sequence of str, default=()
        Limitations of this model besides the general ones (:data:`GENERAL_LIMITATIONS`).
    date : str, default=None
        ISO date and time; ``None`` is now (UTC).
    training_cohort : str, default="TC"
        The cohort of `labels` the model was fitted on; where `labels` has none (an external
        evaluation of a model without a card), the training cohort is left for the authors.

    Returns
    -------
    card : dict
        JSON-safe: ``intended_use``, ``not_intended_use``, ``training_cohort`` (``n``,
        ``n_positive``, ``table1``), ``inputs``, ``settings``, ``validation_scheme``,
        ``cohorts``, ``performance``, ``calibration``, ``contributions``, ``limitations``,
        ``versions``, ``date`` and the rest of the parameters.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> from p53radiomics.model_card import format_model_card, training_model_card
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> card = training_model_card(model, X, y, data_source="a synthetic cohort")
    >>> card["training_cohort"]["n"], sorted(card["contributions"]["coefficients"])
    (12, ['clinical'])
    >>> print(format_model_card(card).splitlines()[0])
    # Model card: P53 mutation in HCC from three-phase DCE-MRI
    """
    from .persistence import library_versions

    table5 = table5[[c for c in _PERFORMANCE if c in table5.columns]]
    reference = training_cohort if training_cohort in (labels or {}) else None
    y_ref = None if reference is None else np.asarray(labels[reference])
    phases = model.named_steps["preprocess"].phases
    return {
        "title": "P53 mutation in HCC from three-phase DCE-MRI",
        "model": "combined model: clinical, radiomics and CNN models stacked by logistic regression",
        "intended_use": list(INTENDED_USE),
        "not_intended_use": list(NOT_INTENDED_USE),
        "data_source": data_source,
        "missing_data": missing_data,
        "training_cohort": {
            "name": reference,
            "n": None if y_ref is None else len(y_ref),
            "n_positive": None if y_ref is None else int(y_ref.sum()),
            "table1": None if table1 is None else _frame(table1),
        },
        "inputs": _inputs(model, phases),
        "settings": _settings(model, settings),
        "validation_scheme": validation_scheme,
        "cohorts": dict(cohorts or {}),
        "performance": _plain(table5.to_dict("records")),
        "calibration": [] if labels is None else _calibration(labels, scores),
        "contributions": _contributions(model),
        "limitations": [*GENERAL_LIMITATIONS, *_inverted_branches(model), *limitations],
        "versions": library_versions(),
        "date": date or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def training_model_card(model, X, y, *, scores=None, thresholds=None, **kwargs):
    """The card of a model fitted on `X`, `y` alone (``p53radiomics fit``): its apparent
    performance on its training cohort, which nothing held out checks.

    `scores` are :func:`~p53radiomics.pipeline.branch_scores` on `X` and `thresholds` those of
    :func:`~p53radiomics.pipeline.fit_thresholds`, where already computed; other parameters go
    to :func:`model_card`. See :func:`model_card` for an example.
    """
    from .pipeline import branch_scores, decision_thresholds
    from .study._tables import cohort_characteristics, model_table

    scores = branch_scores(model, X) if scores is None else scores
    thresholds = thresholds or decision_thresholds(model)
    y = np.asarray(y)
    apparent = (
        "training cohort; apparent performance (the patients the model was fitted and its "
        "thresholds chosen on): optimistic"
    )
    limitation = (
        "No held-out or cross-validated estimate of performance was computed: the figures are "
        "the training cohort's own. Evaluate the model on other patients (p53radiomics evaluate)."
    )
    kwargs.setdefault("validation_scheme", "none: fitted on the whole cohort (" + limitation + ")")
    kwargs["limitations"] = [limitation, *kwargs.get("limitations", ())]
    return model_card(
        model, table5=model_table({"TC": y}, {"TC": scores}, thresholds), labels={"TC": y},
        scores={"TC": scores}, table1=cohort_characteristics(X, y), cohorts={"TC": apparent},
        **kwargs,
    )  # fmt: skip


def extend_model_card(card, *, table5, labels, scores, cohorts):
    """A copy of `card` with the performance and calibration of other cohorts (an external
    validation: ``p53radiomics evaluate``) added to its own.

    Parameters are as :func:`model_card`'s; rows of cohorts already on the card are replaced.
    """
    table5 = table5[[c for c in _PERFORMANCE if c in table5.columns]]
    new = set(labels)
    card = dict(card)
    card["performance"] = [r for r in card["performance"] if r["cohort"] not in new] + _plain(
        table5.to_dict("records")
    )
    card["calibration"] = [r for r in card["calibration"] if r["cohort"] not in new] + _calibration(
        labels, scores
    )
    card["cohorts"] = {**card.get("cohorts", {}), **cohorts}
    return card


def read_model_card(path):
    """The model card stored in a model file (:func:`~p53radiomics.save_model`).

    Raises
    ------
    p53radiomics.exceptions.ModelFileError
        If the file is no model file, or holds no card.
    """
    from .exceptions import ModelFileError
    from .persistence import read_manifest

    metadata = read_manifest(path)["metadata"]
    if not isinstance(metadata, dict) or not isinstance(metadata.get(CARD_KEY), dict):
        raise ModelFileError("holds no model card", path=path, member="metadata.json")
    return metadata[CARD_KEY]


def _number(value, digits=3):
    return "" if value is None else f"{value:.{digits}f}"


def _performance_frame(card):
    rows = []
    for r in card["performance"]:
        auc = f"{_number(r.get('auc'))} ({_number(r.get('auc_low'))}–{_number(r.get('auc_high'))})"
        rows.append({"model": r["model"], "cohort": r["cohort"], "n": r.get("n"),
                     "AUC (95% CI)": auc, "accuracy": _number(r.get("accuracy")),
                     "sensitivity": _number(r.get("sensitivity")),
                     "specificity": _number(r.get("specificity")),
                     "threshold": _number(r.get("threshold"))})  # fmt: skip
    return pd.DataFrame(rows)


def _calibration_frame(card):
    interval = lambda r, k: f"{_number(r[k])} ({_number(r[k + '_low'])}-{_number(r[k + '_high'])})"  # noqa: E731
    return pd.DataFrame(
        [{"model": r["model"], "cohort": r["cohort"], "n": r["n"],
          "slope (95% CI)": interval(r, "slope"), "intercept (95% CI)": interval(r, "intercept"),
          "Brier score": _number(r["brier"])} for r in card["calibration"]]
    )  # fmt: skip


def _table1_frame(card):
    table = card["training_cohort"].get("table1")
    if not table:
        return None
    return pd.DataFrame(table["data"], index=table["index"], columns=table["columns"])


def _contributions_frame(card):
    contributions = card["contributions"]
    if "coefficients" not in contributions:
        return None
    names = ["(intercept)", *contributions["coefficients"]]
    values = [contributions["intercept"], *contributions["coefficients"].values()]
    return pd.DataFrame({"coefficient": [_number(v, 4) for v in values]}, index=names)


_MISSING = "not recorded by this run: for the authors"


def model_card_sections(card):
    """The card as ``(heading, parts)`` pairs, each part a paragraph (str), a bullet list (list
    of str) or a table (DataFrame): what :func:`~p53radiomics.report.write_report` (its
    ``sections``) and :func:`format_model_card` lay out."""
    n, positive = card["training_cohort"]["n"], card["training_cohort"]["n_positive"]
    cohort = _MISSING if n is None else f"{n} patients, {positive} P53-mutated"
    inputs = card["inputs"]
    settings = pd.DataFrame({"value": [str(v) for v in card["settings"].values()]},
                            index=list(card["settings"]))  # fmt: skip
    cohorts = [f"{k}: {v}" for k, v in card["cohorts"].items()]
    contributions = _contributions_frame(card)
    return [
        ("Model", [card["model"] + f" (card of {card['date']})."]),
        ("Intended use", [card["intended_use"]]),
        ("Not intended use", [card["not_intended_use"]]),
        ("Training data", [f"Data source: {card['data_source'] or _MISSING}.",
                           f"Training cohort: {cohort}.",
                           f"Missing data: {card['missing_data'] or _MISSING}.",
                           *([] if _table1_frame(card) is None else [_table1_frame(card)])]),
        ("Inputs", [[f"phases: {', '.join(inputs['phases'])}",
                     f"mask columns: {', '.join(inputs['mask_columns'])}",
                     f"clinical columns: {', '.join(inputs['clinical_columns'])}",
                     f"label: {inputs['label']}", f"images: {inputs['images']}"]]),
        ("Settings", [settings]),
        ("Validation", [f"Scheme: {card['validation_scheme'] or _MISSING}.", cohorts]),
        ("Performance", [_performance_frame(card)] if card["performance"] else [_MISSING]),
        ("Calibration of the combined model",
         [_calibration_frame(card)] if card["calibration"] else [_MISSING]),
        ("Contributions of the branches",
         [contributions, card["contributions"]["note"]] if contributions is not None
         else [card["contributions"]["note"]]),
        ("Known limitations", [card["limitations"]]),
        ("Versions", [[f"{k} {v}" for k, v in card["versions"].items()]]),
    ]  # fmt: skip


def missing_data_note(skipped, on_error):
    """How a run handled patients with missing or bad data (``skipped``, as
    :func:`~p53radiomics.study.prepare_cohort` returns them), in words for the card."""
    if on_error == "skip":
        return (f"complete cases: {len(skipped)} patients with a missing, unreadable or bad "
                "required value were left out (listed in the report); nothing was imputed")  # fmt: skip
    return ("complete cases: a missing, unreadable or bad required value stops the run "
            "(on_error='raise'), so every patient analysed had them; nothing was imputed")  # fmt: skip


def card_report_sections(card):
    """A model card and its reporting checklist as two sections of the report
    (:func:`~p53radiomics.report.write_report`'s ``sections``)."""
    from .checklist import reporting_checklist

    checklist = ("Reporting checklist (TRIPOD+AI, CLEAR)",
                 ["The items this run answers; the others are for the authors. Also checklist.csv.",
                  reporting_checklist(card)])  # fmt: skip
    return [("Model card", model_card_sections(card)), checklist]


def write_card_files(out, card):
    """``checklist.csv`` and ``model_card.md`` of a run's model card, under `out`."""
    from .checklist import reporting_checklist

    reporting_checklist(card).to_csv(out / "checklist.csv", index=False)
    (out / "model_card.md").write_text(format_model_card(card), encoding="utf-8")


def format_model_card(card):
    """The card as Markdown text (what ``p53radiomics card MODEL`` prints).

    Parameters
    ----------
    card : dict
        A :func:`model_card`.

    Returns
    -------
    text : str
    """
    lines = [f"# Model card: {card['title']}"]
    for heading, parts in model_card_sections(card):
        lines += ["", f"## {heading}"]
        for part in parts:
            if isinstance(part, pd.DataFrame):
                lines += ["", part.to_string()]
            elif isinstance(part, list):
                lines += ["", *(f"- {item}" for item in part)]
            else:
                lines += ["", part]
    return "\n".join(lines) + "\n"
