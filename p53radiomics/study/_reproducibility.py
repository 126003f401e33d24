"""The study's reproducibility stage: the agreement of the features between readers and sessions
(the ICC of each feature over the repeated ROIs), and the radiomics model with and without the
robustness filter.

Every extraction goes through the model's per-case cache: the primary ROIs' features were
extracted by the cache stage, each repeated ROI's is extracted once, and the robustness filter
reads them back from the same cache.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..io import mask_set_patients, mask_sets
from ..pipeline import fitted_branch, radiomics_extractor
from ._figures import icc_figure

__all__ = [
    "ROBUSTNESS_THRESHOLD",
    "ReproducibilityResult",
    "feature_groups",
    "reproducibility_stage",
]

#: The demo's robustness threshold: ICC >= 0.75 is "good" reliability (Koo & Li 2016).
ROBUSTNESS_THRESHOLD = 0.75
#: The heading of the report's section.
SECTION_HEADING = "Reproducibility of the features (repeated ROIs)"
#: The label of the primary ROIs' mask set in the ICC tables.
PRIMARY = "reader1"
_MIN_PATIENTS = 2  # the ICC needs at least two patients


@dataclass
class ReproducibilityResult:
    """What :func:`reproducibility_stage` gives the study: its tables (``reproducibility``, one
    row per model, comparison and feature; ``robustness``, the radiomics model with and without
    the filter; each ``None`` where not computed), the summary lines, the report's section and
    the figures."""

    tables: dict
    summary: list
    section: tuple
    figures: dict = field(default_factory=dict)


def feature_groups(names, phases):
    """The class and phase of each feature, as a DataFrame indexed by feature name.

    A radiomics feature ``f"{phase}_{image type}_{class}_{name}"`` (e.g. ``ap_original_glcm_Idm``)
    has its PyRadiomics class (``glcm``); a CNN feature ``cnn_<branch>_pc<j>`` has the class
    ``"CNN"`` and its branch (a phase in FF mode, ``mc`` in MC mode) as its phase.

    Examples
    --------
    >>> from p53radiomics.study._reproducibility import feature_groups
    >>> feature_groups(["ap_original_glcm_Idm", "dp_original_shape_Sphericity", "cnn_mc_pc0"],
    ...                ("ap", "pvp", "dp"))
                                  class phase
    feature
    ap_original_glcm_Idm           glcm    ap
    dp_original_shape_Sphericity  shape    dp
    cnn_mc_pc0                      CNN    mc
    """
    rows = []
    for name in names:
        if name.startswith("cnn_"):
            rows.append(("CNN", name.split("_")[1]))
            continue
        phase = next((p for p in phases if name.startswith(f"{p}_")), None)
        parts = name[len(phase) + 1 :].rsplit("_", 2) if phase else []
        if len(parts) != 3:
            raise ValueError(
                f"feature {name!r}: not named '<phase>_<image type>_<class>_<feature>' with a "
                f"phase of {list(phases)}, nor 'cnn_<branch>_<j>'"
            )
        rows.append((parts[1], phase))
    return pd.DataFrame(
        rows, index=pd.Index(list(names), name="feature"), columns=["class", "phase"]
    )


def _radiomics_by_set(model, Xp, sets, phases):
    """Each mask set's radiomics features (the primary ROIs' first) for the patients who have it;
    the extractor is the model's, so each case's features come from its cache."""
    extract = radiomics_extractor(model)
    extract.set_params(passthrough=(), robustness_threshold=None)
    patients = {s: mask_set_patients(Xp, s, phases) for s in sets}
    union = Xp.index[Xp.index.isin(set().union(*patients.values()))]
    features = {PRIMARY: extract.set_params(mask_set=None).fit_transform(Xp.loc[union])}
    for s in sets:
        features[s] = extract.set_params(mask_set=s).fit_transform(Xp.loc[patients[s]])
    return features


def _cnn_by_set(model, Xp, radiomics):
    """The final CNN's features of the same patients, each mask set's crops through the fitted
    deep branch's cropper (with that `mask_set`) and featurizer."""
    from sklearn.base import clone

    deep = fitted_branch(model, "deep")
    crop, cnn = deep.named_steps["crop"], deep.named_steps["cnn"]
    names = list(cnn.get_feature_names_out())
    features = {}
    for s, table in radiomics.items():
        cropper = clone(crop).set_params(mask_set=None if s == PRIMARY else s)
        values = cnn.transform(cropper.fit_transform(Xp.loc[table.index]))
        features[s] = pd.DataFrame(np.asarray(values), index=table.index, columns=names)
    return features


def _icc_table(features, phases, model_name):
    from ..metrics import reproducibility_table

    table = reproducibility_table(features)
    groups = feature_groups(table.index.get_level_values("feature"), phases)
    table.insert(0, "phase", groups["phase"].to_numpy())
    table.insert(0, "class", groups["class"].to_numpy())
    return pd.concat({model_name: table}, names=["model"])


def _summary_lines(table):
    from ..metrics import reproducibility_summary

    lines = []
    for model_name, part in table.groupby(level="model", sort=False):
        part = part.droplevel("model")
        part.attrs = table.attrs
        for comparison in part.index.get_level_values("comparison").unique():
            lines.append(f"{model_name}: {reproducibility_summary(part, comparison)}")
    return lines


def _group_summary(table, threshold):
    """Per model, comparison and feature class (rows) and phase (columns): the median ICC and the
    share of the features at or above `threshold`, as text."""
    rows = table[~table["constant"].astype(bool)].reset_index()
    grouped = rows.groupby(["model", "comparison", "class", "phase"], sort=False)["icc"]
    cells = grouped.agg(lambda v: f"{v.median():.2f} ({(v >= threshold).mean():.0%})")
    summary = cells.unstack("phase").fillna("")
    summary.columns.name = f"median ICC (share >= {threshold:g})"
    return summary.reindex(columns=list(dict.fromkeys(rows["phase"])))


def _robustness_table(model, Xp, split, scores, threshold):
    """The radiomics model fitted on the TC with the robustness filter, against the combined
    model's radiomics branch (the same model without it): features, VC AUC, DeLong p."""
    from sklearn.base import clone

    from ..metrics import delong_test, roc_auc_ci

    plain = fitted_branch(model, "radiomics")
    robust = clone(model.get_params()["fusion__radiomics"])
    robust.set_params(extract__robustness_threshold=threshold)
    robust.fit(Xp.loc[split.tc], split.y_tc)
    extract = robust.named_steps["extract"]
    vc = {"without filter": scores["VC"]["radiomics"],
          f"with filter (ICC >= {threshold:g})": robust.predict_proba(Xp.loc[split.vc])[:, 1]}  # fmt: skip
    n_features = [len(plain.named_steps["extract"].get_feature_names_out()) - len(extract.passthrough),
                  len(extract.robust_features_)]  # fmt: skip
    rows = []
    for (name, score), n in zip(vc.items(), n_features, strict=True):
        auc, low, high = roc_auc_ci(split.y_vc, score)
        rows.append({"model": f"Radiomics, {name}", "features": n, "VC AUC": auc,
                     "95% CI": f"{low:.3f}-{high:.3f}"})  # fmt: skip
    z, p = delong_test(split.y_vc, *list(vc.values())[::-1])  # z > 0: the filter's AUC higher
    rows[1].update({"DeLong z (with - without)": z, "DeLong p (vs without)": p})
    table = pd.DataFrame(rows).set_index("model")
    table.attrs["cache"] = (extract.robustness_cache_hits_, extract.robustness_cache_misses_)
    return table


def _no_repeated(counts):
    if counts:
        held = ", ".join(f"{s} {n}" for s, n in counts.items())
        why = f"patients per repeated mask set: {held}; the ICC needs at least {_MIN_PATIENTS}"
    else:
        why = "the cohort table has no repeated mask columns, such as ap_mask_reader2"
    text = (f"No repeated ROIs in this cohort ({why}): the agreement between readers and sessions "
            "and the robustness filter were not computed.")  # fmt: skip
    return ReproducibilityResult({"reproducibility": None, "robustness": None}, [],
                                 (SECTION_HEADING, [text]))  # fmt: skip


def reproducibility_stage(out, model, Xp, split, scores, phases, clock, *,
                          threshold=ROBUSTNESS_THRESHOLD, cnn=True):  # fmt: skip
    """The reproducibility stage of :func:`run_study`, measured by `clock` (a
    :class:`StageClock`) as the stage ``reproducibility`` where the cohort has repeated ROIs.

    Parameters
    ----------
    out : pathlib.Path
        Output folder (the figure ``icc_by_class.png``).
    model : Pipeline
        The fitted combined model; its extractor (and cache) extracts the repeated ROIs.
    Xp : pandas.DataFrame
        The preprocessed cohort table, with its repeated mask columns.
    split : object
        The TC and VC (``tc``, ``vc``, ``y_tc``, ``y_vc``).
    scores : dict
        Branch scores by cohort (``scores["VC"]["radiomics"]``: the model without the filter).
    phases : sequence of str
        Phases of the model.
    clock : StageClock
        Measures the stage and logs.
    threshold : float, default=0.75
        The robustness filter's ICC threshold.
    cnn : bool, default=True
        Also the final CNN's features' ICC (a crop and a forward pass per repeated ROI).

    Returns
    -------
    result : ReproducibilityResult
        The ICCs of the mask sets that 2 patients or more have (the ICC needs 2). Where no set
        has, the tables are ``None``, the section says "No repeated ROIs in this cohort" and no
        stage is measured; where a set has fewer than 2 training patients, the robustness filter
        (which takes every set) is not compared and the section says so.
    """
    all_sets = mask_sets(Xp.columns, phases)
    counts = {s: len(mask_set_patients(Xp, s, phases)) for s in all_sets}
    sets = [s for s in all_sets if counts[s] >= _MIN_PATIENTS]  # the ICC needs 2 patients
    if not sets:
        clock.log("no repeated ROIs in this cohort: no reproducibility analysis")
        return _no_repeated(counts)
    clock.log(f"reproducibility: the features of the repeated ROIs ({counts}; cached)")
    with clock.stage("reproducibility", "reproducibility"):
        radiomics = _radiomics_by_set(model, Xp, sets, phases)
        parts = [_icc_table(radiomics, phases, "radiomics")]
        if cnn:
            parts.append(_icc_table(_cnn_by_set(model, Xp, radiomics), phases, "CNN"))
        table = pd.concat(parts)
        table.attrs = parts[0].attrs
        summary = _summary_lines(table)
        # the filter takes every set of the table: each needs 2 training patients
        tc_counts = {s: len(mask_set_patients(Xp.loc[split.tc], s, phases)) for s in all_sets}
        robustness, refused = None, None
        if min(tc_counts.values()) >= _MIN_PATIENTS:
            try:
                robustness = _robustness_table(model, Xp, split, scores, threshold)
            except ValueError as err:  # e.g. no feature reaches the threshold: said in the report
                refused = f"The robustness filter refused to fit on the TC: {err}"
        figures = icc_figure(out, table, threshold)
    for line in summary:
        clock.log(f"  {line}")
    held = ", ".join(f"{s} {n}" for s, n in counts.items())
    notes = [
        f"The ROIs of {max(counts.values())} patients were drawn again (patients per mask set: "
        f"{held}): each feature's "
        "ICC(2,1) (two-way random, absolute agreement, single measures) between the primary ROIs "
        "and each repeated set; the summary is the median feature's ICC with its own 95% CI. "
        "Every feature's ICC is in reproducibility.csv.",
        summary,
        _group_summary(table, threshold),
    ]
    if refused is not None:
        notes.append(refused)
    elif robustness is None:
        held = ", ".join(f"{s} {n}" for s, n in tc_counts.items())
        notes.append(f"The robustness filter was not compared: it takes every repeated mask set, "
                     f"each with {_MIN_PATIENTS} training patients or more; the TC has {held}.")  # fmt: skip
    else:
        hits, misses = robustness.attrs["cache"]
        notes.append(f"The robustness filter's extractions of the training patients' repeated ROIs "
                     f"(table 'robustness' above): {hits} read from the cache, {misses} computed.")  # fmt: skip
    return ReproducibilityResult(
        tables={"reproducibility": table, "robustness": robustness},
        summary=summary,
        section=(SECTION_HEADING, notes),
        figures=figures,
    )
