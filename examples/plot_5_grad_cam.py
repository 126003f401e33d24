"""
==================================
Grad-CAM: where the CNN looks
==================================

Grad-CAM (Selvaraju et al., 2017) shows which regions of its input drive a CNN's prediction: the
activations of the last convolutional stage, weighted by the gradient of the class score and
rectified. The study drew Grad-CAM heatmaps over the tumour crops of its deep-learning model.

:meth:`SkorchCNNFeaturizer.grad_cam <p53radiomics.SkorchCNNFeaturizer.grad_cam>` (or
:func:`p53radiomics.deep.grad_cam`) computes them at crop resolution: one map per phase in feature
fusion (FF: one CNN branch per phase), one joint map in multi-channel fusion (MC: the phases are
the channels of one CNN). :class:`~p53radiomics.plotting.GradCAMDisplay` lays them over the crops.

Here the CNN is fitted on its own on the crops of a small synthetic cohort; in a fitted study
pipeline the same CNN is
``model.named_steps["fusion"].named_estimators_["deep"].named_steps["cnn"]``, and its crops come
from the ``crop`` step of the same branch.

.. note::
   A small cohort with coarse voxels, 64-pixel crops and two epochs, so that the example runs in
   seconds on a CPU; a CNN trained this little has learnt little, and its maps are rough. For a
   real run, use the study's 256-pixel crops (``size=256``), its 20 epochs (``max_epochs=20``,
   the default) and more patients, on a GPU.
"""

# %%
# Crops of the three phases
# -------------------------
# :class:`~p53radiomics.N4Resampler` preprocesses the volumes; :class:`~p53radiomics.LargestSliceCropper`
# takes, on each phase, the axial slice with the largest tumour, crops it around the tumour with a
# 10-pixel margin and resizes it.
import tempfile
from pathlib import Path

import numpy as np

from p53radiomics import LargestSliceCropper, N4Resampler, SkorchCNNFeaturizer
from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.plotting import GradCAMDisplay

workdir = tempfile.TemporaryDirectory(prefix="p53radiomics_example_")
folder = Path(workdir.name)
X, y = make_synthetic_cohort(folder / "cohort", n_patients=16, random_state=0, voxel_scale=3.0)

preprocess = N4Resampler(spacing=(2.0, 2.0, 2.0), n_iterations=(5, 5))
cropper = LargestSliceCropper(margin=10, size=64)  # the study: 256
crops = cropper.fit_transform(preprocess.fit_transform(X))
print("crops:", crops.shape, crops.dtype)  # (patients, phases, height, width)

# %%
# Feature fusion: one map per phase
# ---------------------------------
cnn_ff = SkorchCNNFeaturizer(
    backbone="resnet18",  # the study's best: "resnet101"
    mode="ff",
    max_epochs=2,  # the study: 20
    batch_size=8,
    device="cpu",
    random_state=0,
)
cnn_ff.fit(crops, y)
heatmaps = cnn_ff.grad_cam(crops[:2])
print("heatmaps:", heatmaps.shape)  # (patients, one map per phase, height, width)

# %%
# Each map is scaled to the largest value over the patient's phases, so a phase that does not
# drive the decision stays dark.
probability = cnn_ff.predict_proba(crops[:2])[:, 1]
for i, patient in enumerate(X.index[:2]):
    GradCAMDisplay.from_arrays(
        crops[i],
        heatmaps[i],
        title=f"{patient} (P53 {'+' if y.iloc[i] else '-'}), FF-ResNet18: p = {probability[i]:.2f}",
    )

# %%
# Multi-channel fusion: one joint map
# -----------------------------------
# In MC mode the three phases are the channels of one CNN, so there is one map, drawn over each
# phase.
cnn_mc = SkorchCNNFeaturizer(
    backbone="resnet18", mode="mc", max_epochs=2, batch_size=8, device="cpu", random_state=0
)
cnn_mc.fit(crops, y)
joint = cnn_mc.grad_cam(crops[:1])
print("heatmaps:", joint.shape)
display = GradCAMDisplay.from_arrays(
    crops[0],
    joint[0, 0],
    title=f"{X.index[0]}, MC-ResNet18: p = {cnn_mc.predict_proba(crops[:1])[0, 1]:.2f}",
)

# %%
# Explaining a given class
# ------------------------
# By default each sample's predicted class is explained; ``target=1`` explains the score of
# P53 mutation whatever the prediction.
mutated = cnn_ff.grad_cam(crops[:4], target=1)
print("mean heat per phase (AP, PVP, DP):", np.round(mutated.mean(axis=(0, 2, 3)), 3))

# %%
workdir.cleanup()
