"""The study's figures as PNG files: ROC, calibration and decision curves per cohort, the
nomogram, and Grad-CAM panels; each returned as ``{name: (path, caption)}`` for
:func:`~p53radiomics.report.write_report`."""

import pandas as pd

from ..pipeline import MODEL_NAMES, fitted_branch

__all__ = ["gradcam_figures", "icc_figure", "study_figures"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def study_figures(out, y, scores_by_cohort, random_state, *, model=None, reference="TC"):
    """ROC, calibration and decision curves per cohort and, given the fitted `model`, its nomogram
    (on the branch scores of the `reference` cohort): PNG files under `out`."""
    plt = _pyplot()
    from ..plotting import (
        CalibrationDisplay,
        DecisionCurveDisplay,
        NomogramDisplay,
        RocCurveDisplay,
    )

    figures = {}

    def save(fig, name, caption):
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        figures[name] = (path, caption)

    for cohort, scores in scores_by_cohort.items():
        named = {MODEL_NAMES[k]: v for k, v in scores.items()}
        fig, ax = plt.subplots(figsize=(6, 6))
        RocCurveDisplay.from_predictions(
            y[cohort], named, ax=ax, random_state=random_state, n_bootstraps=200
        )
        ax.set_title(f"ROC curves, {cohort}")
        save(
            fig,
            f"roc_{cohort.lower()}",
            f"ROC curves in the {cohort} with 95% bands; DeLong p-values between curves.",
        )
        fig, ax = plt.subplots(figsize=(6, 6))
        CalibrationDisplay.from_predictions(
            y[cohort], {MODEL_NAMES["combined"]: scores["combined"]}, ax=ax
        )
        ax.set_title(f"Calibration of the combined model, {cohort}")
        save(
            fig,
            f"calibration_{cohort.lower()}",
            f"Calibration curve of the combined model in the {cohort}.",
        )
        fig, ax = plt.subplots(figsize=(7, 5))
        DecisionCurveDisplay.from_predictions(y[cohort], named, ax=ax)
        ax.set_title(f"Decision curves, {cohort}")
        save(
            fig,
            f"decision_curve_{cohort.lower()}",
            f"Net benefit of each model in the {cohort} (decision curve analysis).",
        )
    if model is not None:
        branches = pd.DataFrame(
            {k: scores_by_cohort[reference][k] for k in ("clinical", "radiomics", "deep")}
        )
        fig, ax = plt.subplots(figsize=(9, 5))
        NomogramDisplay.from_estimator(
            model.named_steps["fusion"].final_estimator_, branches, ax=ax
        )
        ax.set_title("Nomogram of the combined model")
        save(
            fig,
            "nomogram",
            "Nomogram: points of each model's probability, total points to the P53 probability.",
        )
    return figures


def gradcam_figures(out, model, Xp, patients, phases):
    """Grad-CAM panels of the fitted `model`'s deep branch for some patients of a preprocessed
    table `Xp`: PNG files under `out`."""
    if not len(patients):  # a profile with n_gradcam=0
        return {}
    plt = _pyplot()
    from ..plotting import GradCAMDisplay

    deep = fitted_branch(model, "deep")
    crops = deep.named_steps["crop"].transform(Xp.loc[patients])
    heatmaps = deep.named_steps["cnn"].grad_cam(crops)
    figures = {}
    for i, pid in enumerate(patients):
        display = GradCAMDisplay.from_arrays(
            crops[i], heatmaps[i], phase_names=[p.upper() for p in phases], title=f"Patient {pid}"
        )
        path = out / f"gradcam_{pid}.png"
        display.figure_.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(display.figure_)
        figures[f"gradcam_{pid}"] = (
            path,
            f"Grad-CAM of the deep model for validation patient {pid}.",
        )
    return figures


def icc_figure(out, table, threshold):
    """Boxplots of the ICCs of a :func:`~p53radiomics.metrics.reproducibility_table` with ``class``
    and ``phase`` columns, by class and phase, one panel per comparison: ``icc_by_class.png``."""
    plt = _pyplot()
    rows = table[~table["constant"].astype(bool)].reset_index()
    comparisons = list(rows["comparison"].unique())
    fig, axes = plt.subplots(len(comparisons), 1, figsize=(10, 3.6 * len(comparisons)),
                             squeeze=False)  # fmt: skip
    for ax, comparison in zip(axes[:, 0], comparisons, strict=True):
        part = rows[rows["comparison"] == comparison]
        groups = list(part.groupby(["class", "phase"], sort=False)["icc"])
        ax.boxplot([g.to_numpy() for _, g in groups], showfliers=True)
        ax.set_xticks(range(1, len(groups) + 1), [f"{c}\n{p}" for (c, p), _ in groups],
                      fontsize=7)  # fmt: skip
        ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1)
        ax.set_ylabel("ICC(2,1)")
        ax.set_title(f"{comparison}: ICC of each feature, by class and phase")
    fig.tight_layout()
    path = out / "icc_by_class.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    caption = (f"ICC of each feature between the primary and the repeated ROIs, by feature class "
               f"and phase (CNN: the final CNN's features); dashed: {threshold:g}.")  # fmt: skip
    return {"icc_by_class": (path, caption)}
