"""
==========================================
Build and fit the study's combined model
==========================================

:func:`~p53radiomics.make_paper_pipeline` builds the study's whole model as one scikit-learn
:class:`~sklearn.pipeline.Pipeline`, from image files to a fused probability:

- ``preprocess``: :class:`~p53radiomics.N4Resampler` (N4 bias-field correction, crop around the
  tumour, resampling, grey-level normalisation);
- ``fusion``: :class:`~p53radiomics.StackingFusion` of three branches, each taking the
  preprocessed cohort table:

  - ``clinical``: encoding, LASSO (:class:`~p53radiomics.LassoSelector`), logistic regression;
  - ``radiomics``: PyRadiomics (:class:`~p53radiomics.RadiomicsExtractor`), z-score, Spearman
    filter (:class:`~p53radiomics.CorrelationFilter`), LASSO, logistic regression;
  - ``deep``: largest-slice crops (:class:`~p53radiomics.LargestSliceCropper`), a CNN
    (:class:`~p53radiomics.SkorchCNNFeaturizer`), LASSO, logistic regression;

  and a logistic regression on the branches' out-of-fold probabilities.

Because every fitted part lives inside the pipeline, cross-validating or grid-searching it never
lets a validation patient leak into training. This example splits a small synthetic cohort 7:3
into a training (TC) and a validation cohort (VC), fits the model on the TC, looks inside it, and
draws the ROC curves of the four models on the VC.

.. note::
   The settings are tiny so that the example runs in seconds on a CPU (24 patients with coarse
   voxels, 32-pixel crops, one epoch, 8 radiomics features per phase, 2-mm voxels, 2 folds); the
   comments give the study's. For a real run, generate more patients at ``voxel_scale=1`` (or read
   your own cohort) and leave out the settings the comments mark, whose defaults are the study's.
   With so few patients and so little training, the AUCs below mean nothing.
"""

# %%
# A synthetic cohort and a stratified 7:3 split
# ---------------------------------------------
import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.model_selection import train_test_split

from p53radiomics.datasets import make_synthetic_cohort

workdir = tempfile.TemporaryDirectory(prefix="p53radiomics_example_")
folder = Path(workdir.name)
X, y = make_synthetic_cohort(folder / "cohort", n_patients=24, random_state=0, voxel_scale=3.0)
X_tc, X_vc, y_tc, y_vc = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
print(f"training cohort: {len(X_tc)} patients, validation cohort: {len(X_vc)} patients")

# %%
# The study's pipeline, with tiny settings
# ----------------------------------------
# The radiomics parameters are a PyRadiomics parameter dict (or YAML file); ``None``, the default,
# is the study's set of 1,223 features per phase. Its ``binCount`` suits the z-scored intensities
# that :class:`~p53radiomics.N4Resampler` produces (PyRadiomics's default ``binWidth: 25`` would
# put a whole z-scored tumour into one grey level).
from p53radiomics import make_paper_pipeline

RADIOMICS = {
    "imageType": {"Original": {}},
    "featureClass": {
        "firstorder": ["Mean", "Median", "Skewness", "Kurtosis", "Entropy", "Uniformity"],
        "glcm": ["Contrast", "Correlation"],
    },
    "setting": {"binCount": 16, "label": 1},
}
model = make_paper_pipeline(
    ["ltd", "rim_aphe", "age", "gender", "afp"],  # candidate clinical predictors
    backbone="resnet18",  # the study's best: "resnet101"
    mode="mc",  # phases as the channels of one CNN; the study's best: "ff", one CNN per phase
    cache_dir=str(folder / "cache"),  # each case is preprocessed and extracted once
    crop_size=32,  # the study: 256
    max_epochs=1,  # the study: 20
    batch_size=16,
    n_components=2,  # PCA components per phase; the study: 8
    radiomics_params=RADIOMICS,  # the study: None
    spacing=(2.0, 2.0, 2.0),  # the study: 1 mm
    cv=2,  # folds of the stacking and the LASSO steps; the study: 5
    device="cpu",  # the default "auto" takes a GPU when there is one
    random_state=0,
)
# Fewer N4 iterations and LASSO candidates: enough for these small volumes.
model.set_params(
    preprocess__n_iterations=(5, 5),
    fusion__clinical__select__Cs=5,
    fusion__radiomics__select__Cs=5,
    fusion__deep__select__Cs=5,
)
model

# %%
# Every setting of every step is reachable by scikit-learn's ``step__parameter`` names:
params = model.get_params()
{name: params[name] for name in params if name.endswith(("__backbone", "__mode", "__spacing"))}

# %%
# Fitting
# -------
# ``fit`` preprocesses every case (N4, crop, resampling, normalisation; written to the cache),
# fits each branch on out-of-fold splits of the training cohort to build the fusion's inputs,
# fits the fusion's logistic regression on them, and refits each branch on the whole training
# cohort.
model.fit(X_tc, y_tc)
risk = model.predict_proba(X_vc)[:, 1]
print("P(P53 mutated) of the first validation patients:", np.round(risk[:5], 3))

# %%
# Inside the fitted model
# -----------------------
# The fusion's ``transform`` gives each branch's probability (the inputs of its logistic
# regression); its ``final_estimator_`` holds the weights of the three models.
preprocess = model.named_steps["preprocess"]
fusion = model.named_steps["fusion"].set_output(transform="pandas")
X_vc_pre = preprocess.transform(X_vc)  # read back from the cache
branch_scores = fusion.transform(X_vc_pre)
branch_scores["combined"] = risk
branch_scores.head()

# %%
# A branch weighed negatively lowers the combined probability as its own rises: on a cohort this
# small, an overfit branch whose out-of-fold scores happened to rank the patients against the
# label. ``fit`` then warns (``InvertedBranchWarning``) and
# :func:`~p53radiomics.fusion.negative_branch_weights` names the branch: do not trust the combined
# model's figures on its training cohort then (see the user guide's "How the fusion is fitted").
from p53radiomics.fusion import negative_branch_weights

weights = dict(zip(fusion.get_feature_names_out(), fusion.final_estimator_.coef_[0], strict=True))
print("fusion weights:", {name: round(float(w), 2) for name, w in weights.items()})
print("weighed negatively:", list(negative_branch_weights(fusion)))
branches = fusion.named_estimators_
print("clinical predictors kept:", list(branches["clinical"][:-1].get_feature_names_out()))
print("radiomics features kept:", list(branches["radiomics"][:-1].get_feature_names_out()))
deep = branches["deep"]  # its crops are an array, without column names
cnn_features = deep.named_steps["cnn"].get_feature_names_out()
print("CNN features kept:", list(cnn_features[deep.named_steps["select"].get_support()]))

# %%
# What the CNN sees: on each phase the axial slice with the largest tumour, cropped around it with
# a 10-pixel margin and resized (here to 32 pixels), after the volumes were preprocessed.
import matplotlib.pyplot as plt

crops = branches["deep"].named_steps["crop"].transform(X_vc_pre)
fig, axes = plt.subplots(3, 4, figsize=(7, 5.5))
for column, patient in enumerate(range(4)):
    for row, phase in enumerate(["AP", "PVP", "DP"]):
        axes[row, column].imshow(crops[patient, row], cmap="gray")
        axes[row, column].set_axis_off()
        axes[row, 0].set_title(phase, loc="left", fontsize="small")
    axes[0, column].set_title(X_vc.index[patient])
fig.tight_layout()

# %%
# ROC curves on the validation cohort
# -----------------------------------
# :class:`~p53radiomics.plotting.RocCurveDisplay` draws each model's curve with its AUC, a 95%
# DeLong interval and a bootstrap band, and tests every pair of curves with DeLong's test.
from p53radiomics.plotting import RocCurveDisplay

display = RocCurveDisplay.from_predictions(
    y_vc, branch_scores.to_dict("series"), n_bootstraps=200, random_state=0
)
display.ax_.set_title("Validation cohort")
display.delong.round(3)

# %%
# Saving and loading
# ------------------
# The fitted pipeline pickles as one object, with the CNN's weights, every selection and the
# fusion; a model fitted on a GPU loads and predicts the same on a CPU-only machine.
joblib.dump(model, folder / "model.joblib")
loaded = joblib.load(folder / "model.joblib")
print("same predictions after loading:", np.allclose(loaded.predict_proba(X_vc)[:, 1], risk))

workdir.cleanup()
