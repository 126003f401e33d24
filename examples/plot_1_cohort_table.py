"""
=====================================================
The cohort table, its checks, and Tables 1 and 2
=====================================================

Every step of ``p53radiomics`` takes a *cohort table*: a :class:`pandas.DataFrame` with one row per
patient, indexed by patient id, whose columns ``ap``, ``pvp``, ``dp`` hold the three dynamic phases
(arterial, portal venous, delayed), ``ap_mask``, ``pvp_mask``, ``dp_mask`` the tumour masks, and
whose other columns are clinical. This example

1. writes a small synthetic cohort (NIfTI volumes and a ``cohort.csv``) into a temporary folder;
2. reads the CSV back and checks it with :func:`~p53radiomics.io.validate_cohort`, which names the
   patient and the column of a problem;
3. shows the three phases of one patient;
4. computes the study's Table 1 (baseline characteristics by P53 status) and Table 2 (univariable
   and multivariable odds ratios), and draws the nomogram of the clinical model.

The cohort is smaller than the study's (120 patients instead of 320) and its voxels coarser, so
that the example runs in seconds; ``make_synthetic_cohort(folder)`` gives the study's size.
"""

# %%
# A synthetic cohort on disk
# --------------------------
# No patient data can be shipped, so the examples run on a generated cohort that behaves like the
# study's: clinical variables drawn to match its Table 1 by class, and per patient three phases
# with a liver, vessels and one tumour whose size is its largest tumour diameter (``ltd``), with
# rim arterial enhancement when ``rim_aphe`` is 1, washout and capsule, acquired on one of seven
# simulated scanners. ``voxel_scale=2.5`` makes the voxels 2.5 times coarser than the scanners'
# (about 15 times fewer voxels), for speed. Everything is written into a temporary folder.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk

from p53radiomics.datasets import make_synthetic_cohort

workdir = tempfile.TemporaryDirectory(prefix="p53radiomics_example_")
folder = Path(workdir.name)
X, y = make_synthetic_cohort(folder / "cohort", n_patients=120, random_state=0, voxel_scale=2.5)
print(f"{len(X)} patients, {int(y.sum())} P53-mutated; scanners: {sorted(X['scanner'].unique())}")
X.drop(columns=["ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask"]).head()

# %%
# The image and mask cells hold paths (any format SimpleITK reads, or a DICOM folder); an
# in-memory :class:`SimpleITK.Image` works as well.
X[["ap", "ap_mask"]].head(3).map(lambda path: Path(path).name)

# %%
# Reading a cohort CSV and checking it
# ------------------------------------
# A cohort CSV holds the same columns plus an id column; relative paths are resolved against the
# CSV's folder. :func:`~p53radiomics.io.read_cohort_csv` returns the table and, with ``label``, the
# labels. :func:`~p53radiomics.io.validate_cohort` opens every file and checks every mask before a
# long run; it returns the table unchanged when all is well.
from p53radiomics.io import read_cohort_csv, validate_cohort

print((folder / "cohort" / "cohort.csv").read_text().splitlines()[1][:110], "...")
X, y = read_cohort_csv(folder / "cohort" / "cohort.csv", label="p53")
X = validate_cohort(X, y=y, required_columns=["ltd", "rim_aphe"])

# %%
# A problem is raised as a :class:`~p53radiomics.CohortError` (a :class:`ValueError`) that names
# the patient and the column, here a mask that is empty:
from p53radiomics import CohortError

empty = sitk.Image(sitk.ReadImage(X.loc["P0003", "pvp"]).GetSize(), sitk.sitkUInt8)
empty.CopyInformation(sitk.ReadImage(X.loc["P0003", "pvp"]))
broken = X.copy()
broken.at["P0003", "pvp_mask"] = empty
try:
    validate_cohort(broken)
except CohortError as error:
    print(error)
    print("patient:", error.patient_id, "| column:", error.column)

# %%
# The three phases of a patient
# -----------------------------
# The arterial phase shows the tumour's hyperenhancement (here a rim, when ``rim_aphe`` is 1), the
# portal venous and delayed phases its washout and capsule. The red line is the tumour mask on the
# axial slice where it is largest.
patient = X.index[np.argmax(X["ltd"].to_numpy() * (1 + X["rim_aphe"].to_numpy()))]
fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
for ax, phase in zip(axes, ["ap", "pvp", "dp"], strict=True):
    image = sitk.GetArrayFromImage(sitk.ReadImage(X.loc[patient, phase]))  # (z, y, x)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(X.loc[patient, f"{phase}_mask"]))
    z = int(np.argmax(mask.sum(axis=(1, 2))))
    ax.imshow(image[z], cmap="gray")
    ax.contour(mask[z], levels=[0.5], colors="red", linewidths=1)
    ax.set_title(phase.upper())
    ax.set_axis_off()
fig.suptitle(
    f"Patient {patient}: LTD {X.loc[patient, 'ltd']:.0f} mm, rim-APHE {X.loc[patient, 'rim_aphe']}"
)
fig.tight_layout()

# %%
# Table 1: baseline characteristics by P53 status
# -----------------------------------------------
# :func:`~p53radiomics.metrics.cohort_summary` gives mean ± SD (t-test or Mann-Whitney) for
# continuous variables and n (%) (chi-square or Fisher) for categorical ones; laboratory values
# are binned at the study's cut-offs.
from p53radiomics.metrics import cohort_summary

clinical = ["age", "gender", "afp", "ltd", "rim_aphe", "washout", "capsule"]
table1 = cohort_summary(X, y, clinical, bins={"afp": [20, 400]}, group_names=("P53-", "P53+"))
table1.drop(columns="p_value")

# %%
# Table 2: univariable and multivariable odds ratios
# --------------------------------------------------
# :func:`~p53radiomics.metrics.logistic_odds_ratios` fits each predictor alone, then the ones with
# a univariable p-value below 0.05 together (the study found LTD and rim-APHE). A categorical
# column enters as indicators of its levels.
from p53radiomics.metrics import logistic_odds_ratios

table2 = logistic_odds_ratios(X, y, ["age", "gender", "ltd", "rim_aphe", "capsule"])
table2.round(3)

# %%
# The nomogram of the clinical model
# ----------------------------------
# A logistic regression on LTD and rim-APHE, drawn as a nomogram by
# :class:`~p53radiomics.plotting.NomogramDisplay`: each predictor's value gives points, the total
# points give the probability of P53 mutation.
from sklearn.linear_model import LogisticRegression

from p53radiomics.plotting import NomogramDisplay

predictors = X[["ltd", "rim_aphe"]].astype(float)
clinical_model = LogisticRegression().fit(predictors, y)
display = NomogramDisplay.from_estimator(
    clinical_model,
    predictors,
    feature_names=["LTD (mm)", "rim-APHE"],
    outcome_name="Risk of P53 mutation",
)
display.figure_.set_size_inches(8, 3.5)

# %%
# The temporary folder and everything in it are removed at the end.
workdir.cleanup()
