"""The reporting checklist of a run: the TRIPOD+AI and CLEAR items a run can answer by itself.

TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) and CLEAR (Kocak et al., Insights Imaging
2023;14:75) ask what a paper on a prediction model, and on radiomics, must report. A run knows
part of it: its data source, sample size, missing-data handling, feature extraction settings
and software, selection, validation scheme, performance measures, calibration and code version.
:func:`reporting_checklist` answers those items from a model card
(:func:`~p53radiomics.model_card.model_card`) and marks the rest "for the authors", so that a
paper's supplement starts from it (``checklist.csv`` of ``p53radiomics demo`` and ``evaluate``).
Item numbers are given where they were checked against the published checklists; the topic names
the item otherwise.
"""

import pandas as pd

__all__ = ["ANSWERED", "FOR_THE_AUTHORS", "reporting_checklist"]

ANSWERED = "answered by the run"
FOR_THE_AUTHORS = "for the authors"
_COLUMNS = ["guideline", "item", "topic", "status", "answer"]


def _settings(card, *keys):
    shown = [f"{k.split('__', 1)[-1]}={card['settings'][k]}" for k in keys if k in card["settings"]]
    return "; ".join(shown)


def _sample_size(card):
    n = card["training_cohort"]["n"]
    if n is None:
        return None
    sizes = {}
    for row in card["performance"]:
        sizes.setdefault(row["cohort"], row["n"])
    others = ", ".join(
        f"{c}: {k}" for c, k in sizes.items() if c != card["training_cohort"]["name"]
    )
    positive = card["training_cohort"]["n_positive"]
    return f"training: {n} patients ({positive} P53-mutated)" + (f"; {others}" if others else "")


def _extraction(card):
    versions = card["versions"]
    software = f"PyRadiomics {versions.get('PyRadiomics')}, SimpleITK {versions.get('SimpleITK')}"
    preprocessing = _settings(
        card, "preprocess__shrink_factor", "preprocess__n_iterations", "preprocess__spacing",
        "preprocess__normalization", "preprocess__margin_mm",
    )  # fmt: skip
    params = card["settings"].get("fusion__radiomics__extract__params")
    deep = _settings(
        card, "fusion__deep__crop__margin", "fusion__deep__crop__size",
        "fusion__deep__cnn__backbone", "fusion__deep__cnn__mode", "fusion__deep__cnn__weights",
    )  # fmt: skip
    return (
        f"{software}; N4 bias-field correction, resampling, normalisation ({preprocessing}); "
        f"PyRadiomics parameters: {params}; CNN (torch {versions.get('torch')}): {deep}"
    )


def _selection(card):
    radiomics = _settings(
        card, "fusion__radiomics__decorrelate__method", "fusion__radiomics__decorrelate__threshold",
        "fusion__radiomics__select__cv",
    )  # fmt: skip
    deep = _settings(card, "fusion__deep__cnn__n_components", "fusion__deep__select__cv")
    return (
        f"radiomics: z-score, correlation filter, LASSO ({radiomics}); CNN features: PCA per "
        f"branch, LASSO ({deep}); clinical: univariable then multivariable logistic selection"
    )


def _performance(card):
    if not card["performance"]:
        return None
    cohorts = ", ".join(dict.fromkeys(r["cohort"] for r in card["performance"]))
    return (
        "AUC with DeLong 95% CI, accuracy, sensitivity and specificity at the Youden threshold "
        f"of the training cohort, for each model, in: {cohorts}; DeLong tests between models"
    )


def _calibration(card):
    rows = card["calibration"]
    if not rows:
        return None
    return "; ".join(
        f"{r['cohort']}: slope {r['slope']:.3f} ({r['slope_low']:.3f}-{r['slope_high']:.3f}), "
        f"intercept {r['intercept']:.3f}, Brier {r['brier']:.3f}"
        for r in rows
    )


def _validation(card):
    scheme = card["validation_scheme"]
    if scheme is None:
        return None
    cohorts = "; ".join(f"{k}: {v}" for k, v in card["cohorts"].items())
    return f"{scheme} ({cohorts}); stacking: out-of-fold branch probabilities, cv={card['settings'].get('fusion__cv')}"


def _items(card):
    """``(guideline, item, topic, answer or None)``: None leaves the item for the authors."""
    code = f"p53radiomics {card['versions'].get('p53radiomics')}; repository or DOI: "
    known = bool(card["settings"])  # the settings of the model: what extraction and selection were
    extraction, selection = (_extraction(card), _selection(card)) if known else (None, None)
    return [
        ("TRIPOD+AI", "5a", "data source", card["data_source"]),
        ("CLEAR", "13", "data source", card["data_source"]),
        ("TRIPOD+AI", "6a-b", "participants: setting and eligibility", None),
        ("TRIPOD+AI", "8a", "outcome and how it was assessed",
         "P53 mutation status (1 = mutated); how it was determined: for the authors"),
        ("TRIPOD+AI", "10", "sample size", _sample_size(card)),
        ("CLEAR", "9", "sample size calculation", None),
        ("TRIPOD+AI", "11", "missing data handling", card["missing_data"]),
        ("CLEAR", "", "image acquisition protocol", None),
        ("CLEAR", "", "segmentation: method, readers, software", None),
        ("CLEAR", "", "image preprocessing, feature extraction settings and software",
         extraction),
        ("TRIPOD+AI", "12b", "predictor handling", selection),
        ("CLEAR", "", "dimensionality reduction and feature selection", selection),
        ("TRIPOD+AI", "12a, 12c", "data partition, model building, internal validation",
         _validation(card)),
        ("CLEAR", "", "testing technique (internal, external)", _validation(card)),
        ("TRIPOD+AI", "12e", "performance measures", _performance(card)),
        ("CLEAR", "", "performance metrics and uncertainty (confidence intervals)",
         _performance(card)),
        ("TRIPOD+AI", "12e, 23a", "calibration", _calibration(card)),
        ("TRIPOD+AI", "17", "ethical approval and consent", None),
        ("TRIPOD+AI", "18f", "code availability", code + FOR_THE_AUTHORS),
        ("CLEAR", "", "sharing code and the final model",
         code + FOR_THE_AUTHORS + "; model file: p53radiomics .p53 (no code runs on loading)"),
    ]  # fmt: skip


def reporting_checklist(card):
    """The TRIPOD+AI and CLEAR items a run answers, from its model card; the rest for the authors.

    Parameters
    ----------
    card : dict
        A model card (:func:`~p53radiomics.model_card.model_card`).

    Returns
    -------
    checklist : pandas.DataFrame
        One row per item: ``guideline`` (``"TRIPOD+AI"`` or ``"CLEAR"``), ``item`` (its number,
        empty where not checked), ``topic``, ``status`` (:data:`ANSWERED` or
        :data:`FOR_THE_AUTHORS`), ``answer`` (empty where for the authors).

    Examples
    --------
    >>> from p53radiomics.checklist import reporting_checklist
    >>> card = {"data_source": "a synthetic cohort", "missing_data": None, "settings": {},
    ...         "training_cohort": {"name": "TC", "n": 12, "n_positive": 5}, "performance": [],
    ...         "calibration": [], "validation_scheme": None, "cohorts": {},
    ...         "versions": {"p53radiomics": "0.1"}}
    >>> table = reporting_checklist(card)
    >>> table.loc[table["topic"] == "sample size", ["status", "answer"]].values.tolist()
    [['answered by the run', 'training: 12 patients (5 P53-mutated)']]
    >>> table.loc[table["topic"] == "missing data handling", "status"].item()
    'for the authors'
    """
    rows = []
    for guideline, item, topic, answer in _items(card):
        status = FOR_THE_AUTHORS if answer is None else ANSWERED
        rows.append(
            dict(zip(_COLUMNS, (guideline, item, topic, status, answer or ""), strict=True))
        )
    return pd.DataFrame(rows, columns=_COLUMNS)
