"""
==================================================
Preprocessing, extraction and grid search on Dask
==================================================

Every ``n_jobs`` of ``p53radiomics`` goes through joblib, as scikit-learn's does. So the same
code runs on a `dask.distributed <https://distributed.dask.org>`_ cluster when it is wrapped in
``with joblib.parallel_config(backend="dask"):``: the cases of :class:`~p53radiomics.N4Resampler`
and :class:`~p53radiomics.RadiomicsExtractor` and the candidates and folds of a
:class:`~sklearn.model_selection.GridSearchCV` become tasks on the cluster's workers, and the
results are the same, bit for bit, as on one machine.

Here the cluster is a :class:`~distributed.LocalCluster` of two workers in this process, so that
the example runs anywhere; on a real cluster only the line that makes the client changes (see
:ref:`scale-out`). Install the extra first: ``pip install "p53radiomics[distributed]"``.

.. note::
   Sixteen synthetic patients with coarse voxels and a reduced feature set, so that the example runs
   in seconds on a laptop; on two local workers the timings mostly show Dask's overhead. A cluster
   pays off when each case takes seconds to minutes (the study's 1-mm volumes and 1,223 features
   per phase) and there are more cores than on one machine. For a real run, read your cohort, use
   the steps' defaults (``N4Resampler()``, ``RadiomicsExtractor()``: the study's settings) and
   give ``Client`` your scheduler's address.
"""

# %%
# A small cohort and the steps that run on the cluster
# ----------------------------------------------------
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from p53radiomics import CorrelationFilter, LassoSelector, N4Resampler, RadiomicsExtractor
from p53radiomics.datasets import make_synthetic_cohort

workdir = tempfile.TemporaryDirectory(prefix="p53radiomics_example_")
folder = Path(workdir.name)
X, y = make_synthetic_cohort(folder / "cohort", n_patients=16, random_state=0, voxel_scale=3.0)

RADIOMICS = {  # the study: None (1,223 features per phase)
    "imageType": {"Original": {}},
    "featureClass": {
        "shape": ["VoxelVolume", "Sphericity"],
        "firstorder": ["Mean", "Entropy", "Skewness", "Kurtosis"],
        "glcm": ["Contrast", "Idmn", "JointEntropy"],
    },
    "setting": {"binCount": 16},
}
preprocess = N4Resampler(spacing=(2.0, 2.0, 2.0), n_iterations=(5, 5))  # the study: 1 mm, 4 x 50
extract = RadiomicsExtractor(params=RADIOMICS)


def preprocess_and_extract(X):
    return extract.fit_transform(preprocess.fit_transform(X))


# %%
# On this machine, one case after the other
# -----------------------------------------
start = time.perf_counter()
features_here = preprocess_and_extract(X)
print(
    f"{features_here.shape[1]} features of {len(X)} patients in {time.perf_counter() - start:.1f} s"
)

# %%
# The cluster
# -----------
# A :class:`~distributed.Client` is the handle on a cluster. For a cluster that is already running,
# give it the scheduler's address, ``Client("tcp://scheduler-host:8786")``; here a
# :class:`~distributed.LocalCluster` of two one-thread workers. ``processes=False`` keeps them in
# this process, which suits an example; ``LocalCluster()`` with worker processes (the default) needs
# the script's code under ``if __name__ == "__main__":``, since each worker process imports it.
from distributed import Client, LocalCluster, get_task_stream

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
client = Client(cluster)
print(f"{len(client.scheduler_info()['workers'])} workers")

# %%
# The same steps on the cluster
# -----------------------------
# Nothing in the estimators changes: the ``parallel_config`` block sends their loops to Dask, with
# ``n_jobs`` left at ``None``. :func:`~distributed.get_task_stream` records the tasks the workers
# ran: one per batch of (patient, phase) pairs, named after the function it calls.
start = time.perf_counter()
with get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
    features_on_dask = preprocess_and_extract(X)
print(f"on the cluster in {time.perf_counter() - start:.1f} s")

ran = pd.DataFrame(tasks.data)
ran["function"] = ran["key"].str.extract(r"batch_of_(\w+?)_\d+_calls")[0]
ran["calls"] = ran["key"].str.extract(r"_(\d+)_calls")[0].astype(int)
ran.groupby(["function", "worker"])["calls"].sum().rename("(patient, phase) pairs").to_frame()

# %%
# The features are identical, not merely close: SimpleITK runs on one thread per case wherever
# the case runs, so the sums inside N4 and the filters are done in the same order.
pd.testing.assert_frame_equal(features_here, features_on_dask, check_exact=True)
print("identical features:", features_here.equals(features_on_dask))

# %%
# A grid search on the cluster
# ----------------------------
# The radiomics branch of the study after extraction (z-score, Spearman filter, LASSO, logistic
# regression), searched over the correlation threshold and the regularisation: each candidate on
# each fold is a task, and so are the fits of the LASSO's own cross-validation inside it.
branch = make_pipeline(
    StandardScaler(),
    CorrelationFilter(),
    LassoSelector(cv=2, Cs=5, random_state=0),  # the study: 5 folds
    LogisticRegression(),
)
grid = {"correlationfilter__threshold": [0.8, 0.9], "logisticregression__C": [0.1, 1.0]}
cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
here = GridSearchCV(branch, grid, scoring="roc_auc", cv=cv).fit(features_here, y)

start = time.perf_counter()
with joblib.parallel_config(backend="dask"):
    on_dask = GridSearchCV(branch, grid, scoring="roc_auc", cv=cv).fit(features_here, y)
print(
    f"grid search of {len(on_dask.cv_results_['params'])} candidates on the cluster in "
    f"{time.perf_counter() - start:.1f} s"
)
same = all(
    np.array_equal(here.cv_results_[key], on_dask.cv_results_[key])
    for key in here.cv_results_
    if key.endswith("test_score")
)
print("identical validation scores:", same, "| best:", on_dask.best_params_)

# %%
client.close()
cluster.close()
workdir.cleanup()
