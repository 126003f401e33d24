"""
==================================================
Grid-search CNN backbones and fusion modes
==================================================

The study compared six CNN backbones (ResNet18/34/50/101/152 and DenseNet121) in two fusion modes:

- **MC** (multi-channel, early fusion): the three phase crops stacked as the channels of one CNN;
- **FF** (feature fusion): one CNN per phase, their penultimate features concatenated.

Since the study's model is one scikit-learn :class:`~sklearn.pipeline.Pipeline`, this is a plain
:class:`~sklearn.model_selection.GridSearchCV` over two of its parameters,
``fusion__deep__cnn__backbone`` and ``fusion__deep__cnn__mode``. Each candidate is refitted from
the image files on each training fold, so the validation folds never reach the preprocessing, the
feature selection, the CNN or the fusion: the scores are honest. With a ``cache_dir``, the costly
steps that learn nothing (N4 preprocessing, radiomics extraction) run once per case, whatever the
number of candidates and folds.

.. note::
   One backbone by two modes for the whole model, two backbones by two modes for the deep
   branch alone, two folds, on a small synthetic cohort with tiny settings, so that the example
   runs in well under a minute on a CPU. For a real run, list the study's six backbones in both
   grids, use 5 folds, and drop the tiny settings (``crop_size``, ``max_epochs``,
   ``n_components``, ``radiomics_params``, ``spacing``, ``cv`` and the ``set_params`` line take
   the study's values by default): a GPU's work. The scores below mean nothing.
"""

# %%
# The cohort and the study's pipeline, with tiny settings
# -------------------------------------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from p53radiomics import make_paper_pipeline
from p53radiomics.datasets import make_synthetic_cohort

workdir = tempfile.TemporaryDirectory(prefix="p53radiomics_example_")
folder = Path(workdir.name)
X, y = make_synthetic_cohort(folder / "cohort", n_patients=24, random_state=0, voxel_scale=3.0)

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
print(f"{len(model.get_params())} parameters, e.g. fusion__deep__cnn__backbone")

# %%
# The grid
# --------
# The names follow the pipeline's steps: ``fusion`` (the stacking), ``deep`` (the deep-learning
# branch), ``cnn`` (its :class:`~p53radiomics.SkorchCNNFeaturizer`). The study's grid is
# ``["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121"]`` by
# ``["mc", "ff"]``; here one backbone by the two modes (every candidate refits the whole model).
param_grid = {
    "fusion__deep__cnn__backbone": ["resnet18"],  # the study: its six backbones
    "fusion__deep__cnn__mode": ["mc", "ff"],
}
search = GridSearchCV(
    model,
    param_grid,
    scoring="roc_auc",
    cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),  # the study would use 5
    n_jobs=1,  # candidates in parallel processes would each need their own memory for the CNN
)
search.fit(X, y)
print(
    f"{len(search.cv_results_['params'])} candidates, each fitted on 2 folds; refit in {search.refit_time_:.1f} s"
)

# %%
# The results
# -----------
# ``cv_results_`` holds every candidate's AUC on each validation fold; the best candidate, refitted
# on the whole cohort, is ``best_estimator_``: a fitted pipeline like any other.
results = pd.DataFrame(search.cv_results_)
table = results[
    [
        "param_fusion__deep__cnn__backbone",
        "param_fusion__deep__cnn__mode",
        "mean_test_score",
        "std_test_score",
        "mean_fit_time",
        "rank_test_score",
    ]
].rename(columns=lambda c: c.replace("param_fusion__deep__cnn__", ""))
table.round(3)

# %%
print("best:", search.best_params_, f"(mean validation AUC {search.best_score_:.3f})")
best = search.best_estimator_
best.named_steps["fusion"].named_estimators_["deep"].named_steps["cnn"]

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.5))
labels = [f"{m.upper()}-{b}" for b, m in zip(table["backbone"], table["mode"], strict=True)]
ax.bar(labels, table["mean_test_score"], yerr=table["std_test_score"], capsize=4, color="tab:blue")
ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
ax.set_ylim(0, 1)
ax.set_ylabel("cross-validated AUC")
ax.set_title("Combined model by CNN backbone and fusion mode")
fig.tight_layout()

# %%
# The cache
# ---------
# Every candidate on every fold read the preprocessed volumes and the radiomics features from the
# cache instead of computing them again: only the first fit paid for them.
preprocess = best.named_steps["preprocess"]
preprocess.transform(X)
print(f"cases read from the cache: {preprocess.cache_hits_}, computed: {preprocess.cache_misses_}")
size = sum(f.stat().st_size for f in (folder / "cache").rglob("*") if f.is_file())
print(f"cache: {size / 1e6:.1f} MB")

# %%
# Comparing the deep models alone
# -------------------------------
# The study's Tables 3 and 4 compare the deep-learning models on their own, before one goes into
# the combined model. The same search on the ``deep`` branch alone is cheaper: the crops do not
# depend on the backbone, so they can be computed once, and a pipeline of the branch's other
# steps searched over them: here two backbones by the two modes.
# (:class:`~p53radiomics.N4Resampler` and :class:`~p53radiomics.LargestSliceCropper` learn nothing,
# so computing them outside the search leaks nothing.)
from sklearn.pipeline import Pipeline

from p53radiomics.pipeline import make_deep_branch

crops = best.named_steps["fusion"].named_estimators_["deep"].named_steps["crop"]
X_crops = crops.transform(preprocess.transform(X))  # float32 array (n_patients, 3, 32, 32)
deep = make_deep_branch(
    crop_size=32, max_epochs=1, batch_size=16, n_components=2, cv=2, device="cpu", random_state=0
)
deep_on_crops = Pipeline(deep.steps[1:]).set_params(select__Cs=5)  # cnn, scale, select, classifier
deep_search = GridSearchCV(
    deep_on_crops,
    {"cnn__backbone": ["resnet18", "resnet34"], "cnn__mode": ["mc", "ff"]},
    scoring="roc_auc",
    cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
    refit=False,  # only the comparison is wanted here, not a refitted best model
).fit(X_crops, y)
pd.DataFrame(deep_search.cv_results_)[
    ["param_cnn__backbone", "param_cnn__mode", "mean_test_score", "mean_fit_time"]
].round(3)

# %%
workdir.cleanup()
