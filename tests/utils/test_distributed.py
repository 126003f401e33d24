"""Scale-out on a dask.distributed cluster: every ``n_jobs`` goes through joblib.

Under ``joblib.parallel_config(backend="dask")`` the synthetic cohort, N4Resampler,
RadiomicsExtractor and a grid search run on a ``LocalCluster``'s workers and give the same results,
bit for bit, as in the calling process. The scheduler's task stream proves that the work ran on the
cluster: each joblib batch is a dask task named after the function it calls.

Two clusters, each started once: two workers of one thread each in this process
(``processes=False``: starts in a fraction of a second, and its workers are threads, the harder case
for process-wide settings), and two worker processes whose working folder is not this process's,
so that arguments really are pickled and relative paths would go astray.
"""

import logging
import os
import re
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.feature_selection import CorrelationFilter, LassoSelector
from p53radiomics.io import read_image
from p53radiomics.preprocessing import N4Resampler
from p53radiomics.radiomics import RadiomicsExtractor
from p53radiomics.utils._parallel import parallel_map
from p53radiomics.utils._sitk import one_sitk_thread

# Under `make test` (pytest-xdist, --dist loadgroup) this module's tests share one worker, so
# its module-scoped fixtures are built once rather than once per worker.
pytestmark = pytest.mark.xdist_group("utils.test_distributed")

N4_FAST = {"n_iterations": (20, 20)}
IMAGE_COLUMNS = {"ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask"}
# A few features of every kind of class PyRadiomics computes from an image, on one image type.
SMALL_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {
        "shape": ["VoxelVolume"],
        "firstorder": ["Mean", "Entropy"],
        "glcm": ["Idmn"],
        "glszm": ["ZoneEntropy"],
    },
    "setting": {"binCount": 16},
}


# -------------------------------------------------------------------------------------- fixtures
# No dashboard, and the scheduler's plain HTTP routes on a free port rather than 8787, which the
# other cluster (or any other on the machine) may hold.
NO_DASHBOARD = {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": ":0"}}


@pytest.fixture(scope="module")
def client():
    """A client of two one-thread workers running in this process."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, **NO_DASHBOARD
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def process_client(tmp_path_factory):
    """A client of two one-thread worker processes, whose working folder is not this process's."""
    distributed = pytest.importorskip("distributed")
    elsewhere = str(tmp_path_factory.mktemp("workers_cwd"))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, **NO_DASHBOARD
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        client.run(os.chdir, elsewhere)
        yield client


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three synthetic patients with coarse voxels: ``(X, y)``, image cells are paths."""
    return make_synthetic_cohort(
        tmp_path_factory.mktemp("cohort"), n_patients=3, random_state=1, voxel_scale=3.0
    )


@pytest.fixture(scope="module")
def n4_local(cohort):
    """N4Resampler's output on `cohort`, computed in this process."""
    return N4Resampler(**N4_FAST).fit_transform(cohort[0])


@contextmanager
def on_cluster(client):
    """Run the block under ``parallel_config(backend="dask")``; yield a Counter of the calls.

    The counter, filled when the block ends, maps a function's name to the number of calls of it
    that ran on the cluster's workers (joblib's dask backend names each task
    ``batch_of_<function>_<n>_calls-<uuid>``).
    """
    from distributed import get_task_stream

    calls = Counter()
    with get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask", client=client):
            yield calls
    for record in stream.data:
        match = re.fullmatch(r"(?:mixed_)?batch_of_(.+)_(\d+)_calls-[0-9a-f]+", str(record["key"]))
        if match:
            calls[match.group(1)] += int(match.group(2))


def _pixels(cell):
    image = read_image(cell) if not isinstance(cell, sitk.Image) else cell
    return (
        image.GetPixelID(),
        image.GetSize(),
        image.GetSpacing(),
        image.GetOrigin(),
        image.GetDirection(),
        sitk.GetArrayViewFromImage(image).tobytes(),
    )


def assert_identical_tables(a, b, image_columns):
    """Same table; image cells (images or paths) with the same pixels, bit for bit, and geometry."""
    assert list(a.columns) == list(b.columns)
    assert a.index.equals(b.index)
    for column in a.columns:
        if column in image_columns:
            for pid in a.index:
                assert _pixels(a.at[pid, column]) == _pixels(b.at[pid, column]), (pid, column)
        else:
            pd.testing.assert_series_equal(a[column], b[column])


# ------------------------------------------------------------------------- process-wide settings
def test_one_sitk_thread_holds_while_tasks_overlap_in_threads():
    """Two tasks of one process overlap (A in, B in, A out, B out): B keeps its single thread.

    Each task saving and restoring the number on its own would give B all the threads back when A
    leaves, and leave the process on one thread when B leaves.
    """
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def task_a():
        with one_sitk_thread():
            a_in.set()
            b_in.wait(5)
            seen["a"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        a_out.set()

    def task_b():
        a_in.wait(5)
        with one_sitk_thread():
            b_in.set()
            a_out.wait(5)
            seen["b"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()

    try:
        threads = [threading.Thread(target=task_a), threading.Thread(target=task_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert seen == {"a": 1, "b": 1}
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_n4_is_identical_on_joblib_s_threading_backend(cohort, n4_local):
    with joblib.parallel_config(backend="threading", n_jobs=2):
        threaded = N4Resampler(**N4_FAST).fit_transform(cohort[0])
    assert_identical_tables(n4_local, threaded, IMAGE_COLUMNS)


@pytest.mark.parametrize(
    ("backend", "streams"), [("loky", True), ("threading", True), ("multiprocessing", False)]
)
def test_parallel_map_keeps_the_order_and_streams_where_the_backend_can(backend, streams):
    with joblib.parallel_config(backend=backend):
        results = parallel_map(pow, [(2, k) for k in range(6)], n_jobs=2)
        assert hasattr(results, "close") == streams  # multiprocessing cannot stream: a list
        assert list(results) == [1, 2, 4, 8, 16, 32]


# ------------------------------------------------------------------- the same results on dask
def test_synthetic_cohort_is_byte_identical_on_the_cluster(client, tmp_path):
    X, y = make_synthetic_cohort(tmp_path / "local", n_patients=2, random_state=4, voxel_scale=3.0)
    with on_cluster(client) as calls:
        Xd, yd = make_synthetic_cohort(
            tmp_path / "dask", n_patients=2, random_state=4, voxel_scale=3.0, n_jobs=-1
        )
    assert calls == {"_make_patient": 2}
    pd.testing.assert_series_equal(y, yd)
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.*"))
    assert len(files) == 1 + 2 * 6  # cohort.csv, 3 phases and 3 masks per patient
    assert files == sorted(
        p.relative_to(tmp_path / "dask") for p in (tmp_path / "dask").rglob("*.*")
    )
    for name in files:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()


@pytest.mark.parametrize("n_jobs", [None, 1, -1])
def test_n4_is_identical_on_the_cluster_whatever_n_jobs(client, cohort, n4_local, n_jobs):
    X, _ = cohort
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    with on_cluster(client) as calls:
        remote = N4Resampler(n_jobs=n_jobs, **N4_FAST).fit_transform(X)
    # every (patient, phase) ran on the workers, even with n_jobs=1, as scikit-learn's loops do
    assert calls == {"_preprocess_item": len(X) * 3}
    assert_identical_tables(n4_local, remote, IMAGE_COLUMNS)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads


def test_radiomics_features_are_identical_on_the_cluster(client, cohort):
    import radiomics  # noqa: F401  (its import attaches its handler: the state to keep is after it)

    X, _ = cohort
    rlogger = logging.getLogger("radiomics")
    state = (rlogger.level, rlogger.propagate, [list(h.filters) for h in rlogger.handlers])
    local = RadiomicsExtractor(params=SMALL_PARAMS).fit_transform(X)
    with on_cluster(client) as calls:
        extractor = RadiomicsExtractor(params=SMALL_PARAMS, n_jobs=-1)
        remote = extractor.fit_transform(X)
    assert calls == {"extract_phase": len(X) * 3}
    assert remote.shape == (len(X), 3 * 5) and np.isfinite(remote.to_numpy()).all()
    pd.testing.assert_frame_equal(local, remote, check_exact=True)
    assert extractor.skipped_.empty
    # extractions overlapping in the workers' threads left PyRadiomics's logger as it was
    assert state == (rlogger.level, rlogger.propagate, [list(h.filters) for h in rlogger.handlers])


def test_grid_search_scores_are_identical_on_the_cluster(client):
    X, y = make_classification(
        n_samples=60, n_features=12, n_informative=4, n_redundant=4, random_state=0
    )
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("decorrelate", CorrelationFilter()),
            ("select", LassoSelector(cv=3, Cs=np.logspace(-1, 2, 5), random_state=0)),
            ("classifier", LogisticRegression()),
        ]
    )
    grid = {"decorrelate__threshold": [0.7, 0.95], "classifier__C": [0.1, 1.0]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    local = GridSearchCV(pipeline, grid, cv=cv, scoring="roc_auc").fit(X, y)
    with on_cluster(client) as calls:
        remote = GridSearchCV(pipeline, grid, cv=cv, scoring="roc_auc", n_jobs=-1).fit(X, y)
    # 4 candidates x 3 folds, and inside each of those fits and the final refit, LassoSelector's
    # own search over 5 Cs x 3 folds: nested loops go to the cluster too
    assert calls == {"_fit_and_score": 4 * 3 + (4 * 3 + 1) * 5 * 3}
    for key, values in local.cv_results_.items():
        if key.endswith("test_score"):  # split<i>_, mean_, std_ and rank_test_score
            np.testing.assert_array_equal(values, remote.cv_results_[key], err_msg=key)
    assert local.best_params_ == remote.best_params_
    np.testing.assert_array_equal(local.predict_proba(X), remote.predict_proba(X))


# ------------------------------------------------------ worker processes elsewhere on the disk
def test_in_memory_images_travel_to_worker_processes_and_back(process_client, cohort):
    X, _ = cohort
    columns = ["ap", "ap_mask", "pvp", "pvp_mask"]
    X = X[columns + ["age"]].copy()
    for column in columns:
        X[column] = pd.Series([read_image(p) for p in X[column]], index=X.index, dtype=object)
    step = N4Resampler(phases=("ap", "pvp"), **N4_FAST)
    local = step.fit_transform(X)
    with on_cluster(process_client) as calls:
        remote = step.fit_transform(X)
    assert calls == {"_preprocess_item": len(X) * 2}
    assert all(isinstance(cell, sitk.Image) for cell in remote[columns].to_numpy().ravel())
    assert_identical_tables(local, remote, set(columns))


def test_relative_folders_are_this_process_s_not_the_workers(process_client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with on_cluster(process_client) as calls:
        X, _ = make_synthetic_cohort("cohort", n_patients=2, random_state=2, voxel_scale=3.0)
        step = N4Resampler(phases=("ap",), cache_dir="cache", **N4_FAST)
        first = step.fit_transform(X)
        assert (step.cache_hits_, step.cache_misses_) == (0, 2)
        second = step.fit_transform(X)
        assert (step.cache_hits_, step.cache_misses_) == (2, 0)
    assert calls == {"_make_patient": 2, "_preprocess_item": 2}
    assert len(list(Path("cohort/images").glob("*.nii.gz"))) == 2 * 6
    for cell in first[["ap", "ap_mask"]].to_numpy().ravel():
        assert Path(cell).is_absolute() and Path(cell).is_relative_to(tmp_path / "cache")
        assert Path(cell).is_file()
    pd.testing.assert_frame_equal(first, second)
