"""
=============================================
Evaluate a fitted model on an external cohort
=============================================

The study validated its model on patients of the same hospital. The real test of a radiomics model
is another centre, with other scanners: this is where the study's radiomics model broke down. This
example fits the combined model on an *internal* cohort acquired on four simulated scanners, saves
it, loads it back as another centre would, and evaluates it on an *external* cohort that includes
three scanners the model never saw:

- the diagnostic table (the study's Table 5): accuracy, AUC with its 95% DeLong interval,
  sensitivity and specificity, at a threshold chosen on the training cohort only;
- DeLong's test between the combined and the clinical model;
- ROC, calibration and decision curves.

The same evaluation from the command line is ``p53radiomics evaluate --model model.p53
--cohort external.csv --label p53 --out DIR`` (see the user guide).

.. note::
   Tiny settings and small cohorts with coarse voxels, so that the example runs in seconds on a
   CPU: the figures show how to evaluate, not how well the method works. For a real run, read your
   own internal and external cohorts (or generate hundreds of patients at ``voxel_scale=1``) and
   leave out the settings the comments mark, whose defaults are the study's.
"""

# %%
# An internal and an external cohort
# ----------------------------------
# The synthetic cohort's first four scanners for the internal cohort; all seven, with another
# seed (other patients), for the external one.
import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import pandas as pd

from p53radiomics import make_paper_pipeline
from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.io import read_cohort_csv
from p53radiomics.pipeline import branch_scores

workdir = tempfile.TemporaryDirectory(prefix="p53radiomics_example_")
folder = Path(workdir.name)
X, y = make_synthetic_cohort(
    folder / "internal", n_patients=24, random_state=0, n_scanners=4, voxel_scale=3.0
)
make_synthetic_cohort(folder / "external", n_patients=16, random_state=1, voxel_scale=3.0)
X_ext, y_ext = read_cohort_csv(folder / "external" / "cohort.csv", label="p53")
pd.crosstab(X_ext["scanner"], X_ext["scanner"].isin(X["scanner"]).map({True: "seen", False: "new"}))

# %%
# Fitting on the internal cohort, saving the model
# ------------------------------------------------
RADIOMICS = {
    "imageType": {"Original": {}},
    "featureClass": {
        "firstorder": ["Mean", "Median", "Skewness", "Kurtosis", "Entropy", "Uniformity"],
        "glcm": ["Contrast", "Correlation"],
    },
    "setting": {"binCount": 16, "label": 1},
}
model = make_paper_pipeline(
    ["ltd", "rim_aphe", "age", "afp"],
    backbone="resnet18",  # the study: "resnet101"
    mode="mc",  # the study's best: "ff"
    cache_dir=str(folder / "cache"),
    crop_size=32,  # the study: 256
    max_epochs=1,  # the study: 20
    batch_size=16,
    n_components=2,  # the study: 8 per phase
    radiomics_params=RADIOMICS,  # the study: None (1,223 features per phase)
    spacing=(2.0, 2.0, 2.0),  # the study: 1 mm
    cv=2,  # the study: 5
    device="cpu",
    random_state=0,
)
# Fewer N4 iterations and LASSO candidates: enough for these small volumes.
model.set_params(
    preprocess__n_iterations=(5, 5),
    fusion__clinical__select__Cs=5,
    fusion__radiomics__select__Cs=5,
    fusion__deep__select__Cs=5,
)
model.fit(X, y)
joblib.dump(model, folder / "model.joblib")
print(f"model saved: {(folder / 'model.joblib').stat().st_size / 1e6:.0f} MB")

# %%
# Scoring both cohorts
# --------------------
# The model as another centre would receive it: loaded from its file.
# :func:`~p53radiomics.pipeline.branch_scores` gives each branch's probability
# and the combined one, the cohort preprocessed once.
model = joblib.load(folder / "model.joblib")


def model_scores(model, X):
    """Probability of P53 mutation from each of the four models, one column each."""
    return pd.DataFrame(branch_scores(model, X), index=X.index)


scores = {"Internal": model_scores(model, X), "External": model_scores(model, X_ext)}
labels = {"Internal": y, "External": y_ext}
scores["External"].head()

# %%
# The diagnostic table
# --------------------
# :func:`~p53radiomics.metrics.diagnostic_table` chooses each model's threshold on the reference
# cohort (Youden's J on the internal, training, cohort) and applies it unchanged to the external
# one, so the external sensitivity and specificity are honest. (The internal rows are measured on
# the patients the model was fitted on: optimistic, as a training cohort's always are.)
from p53radiomics.metrics import delong_test, diagnostic_table

results = {
    f"{name} model": {cohort: (labels[cohort], scores[cohort][name]) for cohort in scores}
    for name in ["clinical", "radiomics", "deep", "combined"]
}
table = diagnostic_table(results, reference_cohort="Internal")
table[
    ["model", "cohort", "n", "threshold", "accuracy", "auc_ci", "sensitivity", "specificity"]
].round(3)

# %%
# DeLong's test: does fusing the three models beat the clinical model alone on the external
# cohort?
z, p = delong_test(y_ext, scores["External"]["combined"], scores["External"]["clinical"])
print(f"combined vs clinical on the external cohort: z = {z:.2f}, p = {p:.3f}")

# %%
# ROC, calibration and decision curves on the external cohort
# -----------------------------------------------------------
from p53radiomics.plotting import CalibrationDisplay, DecisionCurveDisplay, RocCurveDisplay

external = scores["External"].to_dict("series")
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
RocCurveDisplay.from_predictions(
    y_ext, external, ax=axes[0], n_bootstraps=200, random_state=0, show_delong=False
)
CalibrationDisplay.from_predictions(y_ext, {"combined": external["combined"]}, n_bins=4, ax=axes[1])
DecisionCurveDisplay.from_predictions(y_ext, external, ax=axes[2])
for ax, title in zip(axes, ["ROC", "Calibration", "Decision curves"], strict=True):
    ax.set_title(f"{title}, external cohort")
fig.tight_layout()

# %%
# Predictions for new patients
# ----------------------------
# For patients without a label, ``predict_proba`` gives the fused probability; a CSV of them is
# what ``p53radiomics predict --model model.joblib --cohort new.csv --out predictions.csv``
# writes.
predictions = pd.DataFrame({"p53_probability": model.predict_proba(X_ext)[:, 1]}, index=X_ext.index)
predictions.to_csv(folder / "predictions.csv")
predictions.head()

# %%
workdir.cleanup()
