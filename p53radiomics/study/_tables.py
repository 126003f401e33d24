"""The study's tables: characteristics (Table 1), odds ratios (Table 2), the CNN comparison
(Tables 3 and 4), the four models (Table 5) and the DeLong tests between them."""

import time

import numpy as np
import pandas as pd

from ..pipeline import MODEL_NAMES
from ._profiles import deep_settings

__all__ = [
    "LAB_BINS",
    "TABLE_COLUMNS",
    "cnn_comparison",
    "delong_table",
    "model_table",
    "print_summary",
    "table1",
    "table2",
    "table2_frame",
]

#: Columns of the study's Tables 1 and 2.
TABLE_COLUMNS = (
    "age", "gender", "ca199", "afp", "cea", "edmondson_grade", "mvi", "ltd", "rim_aphe", "washout",
    "delayed_central_enhancement", "capsule",
)  # fmt: skip
#: The categories in which the study reports laboratory values.
LAB_BINS = {"afp": [20, 400], "cea": [5], "ca199": [37]}


def table1(X_tc, y_tc, X_vc, y_vc):
    """Table 1: characteristics by class in the TC and the VC, and TC against VC."""
    from ..metrics import cohort_summary

    columns = [c for c in TABLE_COLUMNS if c in X_tc.columns]
    names = ("P53-", "P53+")
    tc = cohort_summary(X_tc, y_tc, columns, bins=LAB_BINS, group_names=names)
    vc = cohort_summary(X_vc, y_vc, columns, bins=LAB_BINS, group_names=names)
    both = pd.concat([X_tc, X_vc])
    split = pd.Series(np.r_[np.zeros(len(X_tc), int), np.ones(len(X_vc), int)], index=both.index)
    between = cohort_summary(both, split, columns, bins=LAB_BINS, group_names=("TC", "VC"))
    keep = lambda t: t.drop(columns=["p_value", "test"])  # noqa: E731
    return pd.concat(
        {"TC": keep(tc), "VC": keep(vc), "TC vs VC": between[["P value"]]}, axis=1
    ).fillna("")


def table2_frame(X):
    """The study's coding of Table 2: laboratory values as ordered categories, signs as 0/1."""
    columns = [c for c in TABLE_COLUMNS if c in X.columns]
    out = X[columns].copy()
    for column, edges in LAB_BINS.items():
        if column in out:
            out[column] = np.digitize(out[column].to_numpy(float), edges)
    if "washout" in out and out["washout"].dtype == object:
        order = {"none": 0, "nonperipheral": 1, "peripheral": 2}
        if set(out["washout"].dropna()) <= set(order):
            out["washout"] = out["washout"].map(order)
    return out


def table2(X_tc, y_tc):
    """Table 2: univariable and multivariable odds ratios in the TC."""
    from ..metrics import logistic_odds_ratios

    return logistic_odds_ratios(table2_frame(X_tc), y_tc)


def delong_table(y, scores, cohort):
    """DeLong tests of the combined model against each single one: rows of a table."""
    from ..metrics import delong_test

    rows = []
    for other in ("clinical", "radiomics", "deep"):
        z, p = delong_test(y, scores["combined"], scores[other])
        rows.append(
            {
                "cohort": cohort,
                "comparison": f"Combined vs {MODEL_NAMES[other]}",
                "z": z,
                "p_value": p,
            }
        )
    return rows


def model_table(labels, scores, thresholds=None):
    """Table 5: the four models on each cohort.

    `labels` and `scores` are by cohort (scores by branch, as
    :func:`~p53radiomics.pipeline.branch_scores` gives them); `thresholds` by branch, or ``None``
    for Youden's on the first cohort.
    """
    from ..metrics import diagnostic_table

    results = {
        MODEL_NAMES[k]: {cohort: (labels[cohort], scores[cohort][k]) for cohort in labels}
        for k in MODEL_NAMES
    }
    if thresholds is None:
        return diagnostic_table(results, threshold="youden")
    return diagnostic_table(results, threshold={MODEL_NAMES[k]: t for k, t in thresholds.items()})


def cnn_comparison(profile, Xp, split, phases, random_state, log):
    """Tables 3 and 4: each backbone in each mode, trained on the TC's crops of the preprocessed
    table `Xp`; ``{mode: table}``."""
    from sklearn.pipeline import Pipeline

    from ..metrics import diagnostic_table
    from ..pipeline import make_deep_branch

    # the crops are computed once for every model, by the crop step the profile's branch has
    crop = make_deep_branch(phases, **deep_settings(profile)).named_steps["crop"]
    crops = pd.DataFrame({"crop": list(crop.transform(Xp))}, index=Xp.index)

    def stack(ids):
        return np.stack(crops.loc[ids, "crop"].to_list()).astype(np.float32)

    tables = {}
    for mode in profile.modes:
        results = {}
        for backbone in profile.backbones:
            branch = make_deep_branch(
                phases,
                **deep_settings(profile, backbone=backbone, mode=mode),
                cv=profile.cv,
                random_state=random_state,
            )
            model = Pipeline([(name, step) for name, step in branch.steps if name != "crop"])
            t = time.perf_counter()
            model.fit(stack(split.tc), split.y_tc)
            results[f"{mode.upper()}_{backbone}"] = {
                "TC": (split.y_tc, model.predict_proba(stack(split.tc))[:, 1]),
                "VC": (split.y_vc, model.predict_proba(stack(split.vc))[:, 1]),
            }
            log(f"  {mode.upper()} {backbone}: trained in {time.perf_counter() - t:.1f} s")
        tables[mode] = diagnostic_table(results, reference_cohort="TC")
    return tables


def print_summary(tables):
    """Tables 1-5 and the DeLong tests, printed."""
    with pd.option_context(
        "display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40
    ):
        print("\nTable 1. Characteristics by P53 status")
        print(tables["table1"].to_string())
        print("\nTable 2. Odds ratios (training cohort)")
        print(tables["table2"].round(3).to_string())
        columns = ["model", "cohort", "accuracy", "auc_ci", "sensitivity", "specificity"]
        for key, title in (
            ("table3", "Table 3. MC DL models"),
            ("table4", "Table 4. FF DL models"),
            ("table5", "Table 5. Clinical, radiomics, DL and combined models"),
        ):
            if tables.get(key) is not None:
                print(f"\n{title}")
                print(tables[key][columns].round(3).to_string(index=False))
        print("\nDeLong tests")
        print(tables["delong"].round(4).to_string(index=False))
