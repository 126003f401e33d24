"""The study's tables: characteristics (Table 1), odds ratios (Table 2), the CNN comparison
(Tables 3 and 4), the four models (Table 5) and the DeLong tests between them; and the run's own
table, what each stage cost (:class:`StageClock`, :func:`stage_table`)."""

import contextlib
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

try:  # POSIX only: elsewhere the CPU time is this process's alone and no peak memory is read
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None
try:  # optional: the CPU time and memory of joblib's worker processes (see StageClock)
    import psutil
except ImportError:  # pragma: no cover - psutil comes with the dev extra's dask.distributed
    psutil = None

from ..pipeline import MODEL_NAMES
from ._profiles import deep_settings, lasso_candidates

__all__ = [
    "LAB_BINS",
    "STAGE_NOTE",
    "StageClock",
    "TABLE_COLUMNS",
    "cnn_comparison",
    "cohort_characteristics",
    "delong_table",
    "model_table",
    "performance_tables",
    "print_stages",
    "print_summary",
    "stage_table",
    "table1",
    "scanner_section",
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


def cohort_characteristics(X, y):
    """One cohort's part of Table 1: its characteristics by class, with the P value."""
    from ..metrics import cohort_summary

    columns = [c for c in TABLE_COLUMNS if c in X.columns]
    table = cohort_summary(X, y, columns, bins=LAB_BINS, group_names=("P53-", "P53+"))
    return table.drop(columns=["p_value", "test"])


def table1(X_tc, y_tc, X_vc, y_vc):
    """Table 1: characteristics by class in the TC and the VC, and TC against VC."""
    from ..metrics import cohort_summary

    columns = [c for c in TABLE_COLUMNS if c in X_tc.columns]
    both = pd.concat([X_tc, X_vc])
    split = pd.Series(np.r_[np.zeros(len(X_tc), int), np.ones(len(X_vc), int)], index=both.index)
    between = cohort_summary(both, split, columns, bins=LAB_BINS, group_names=("TC", "VC"))
    tc, vc = cohort_characteristics(X_tc, y_tc), cohort_characteristics(X_vc, y_vc)
    return pd.concat({"TC": tc, "VC": vc, "TC vs VC": between[["P value"]]}, axis=1).fillna("")


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


def scanner_section(X, X_external=None):
    """The report's section on the synthetic cohort's scanners: their settings and patients, and
    those of the external cohort (`X_external`, where there is one)."""
    from ..datasets import scanner_table

    def table(cohort):
        counts = cohort["scanner"].value_counts()
        return scanner_table(sorted(counts.index)).assign(patients=counts)

    text = (
        "The synthetic cohort's scanners (p53radiomics.datasets.scanner_table). Voxel spacing, "
        "grey scale and offset, noise and bias field are removed by N4 correction, resampling and "
        "z-scoring; the reconstruction kernel (< 0 smooths, > 0 sharpens), slice thickness, noise "
        "correlation (voxels) and enhancement ratios (AP / PVP / DP) are not: they are the scanner "
        "effects on texture that ComBat harmonisation is for."
    )
    parts = [text, table(X)]
    if X_external is not None and "scanner" in X_external:
        parts += [
            "The external cohort's scanners (EV, p53radiomics.datasets.EXTERNAL_SCANNERS), none of "
            "them in the development cohort: the model meets their effects for the first time.",
            table(X_external),
        ]
    return ("Simulated scanners", parts)


def table2(X_tc, y_tc):
    """Table 2: univariable and multivariable odds ratios in the TC.

    A variable constant over the TC (in a small cohort, e.g. ``demo --n-patients 24``, every
    tumour may have a capsule) has no odds ratio: it is left out, and ``attrs["note"]`` names it
    (the report and the console print the note above the table).
    """
    from ..metrics import logistic_odds_ratios

    frame = table2_frame(X_tc)
    constant = [c for c in frame.columns if frame[c].nunique(dropna=False) < 2]
    table = logistic_odds_ratios(frame.drop(columns=constant), y_tc)
    if constant:
        table.attrs["note"] = (
            f"Left out of Table 2, constant in the training cohort (no odds ratio can be "
            f"estimated): {', '.join(constant)}."
        )
    return table


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
        if all(k in scores[cohort] for cohort in labels)  # a branch set to "drop" has none
    }
    if thresholds is None:
        return diagnostic_table(results, threshold="youden")
    names = {MODEL_NAMES[k]: t for k, t in thresholds.items() if MODEL_NAMES[k] in results}
    return diagnostic_table(results, threshold=names)


def performance_tables(labels, scores, thresholds):
    """Table 5 (:func:`model_table`) and the DeLong tests (:func:`delong_table`) of every cohort
    of `labels` (``{"TC": y, "VC": y, ...}``, in that order), at the given `thresholds`."""
    delong = [
        row for cohort, y in labels.items() for row in delong_table(y, scores[cohort], cohort)
    ]
    return {"table5": model_table(labels, scores, thresholds), "delong": pd.DataFrame(delong)}


def cnn_comparison(profile, Xp, split, phases, random_state, log, stage=None):
    """Tables 3 and 4: each backbone in each mode, trained on the TC's crops of the preprocessed
    table `Xp`; ``{mode: table}``. `stage(name)`, a context manager (:meth:`StageClock.stage`),
    measures the crops and each model."""
    from sklearn.pipeline import Pipeline

    from ..metrics import diagnostic_table
    from ..pipeline import make_deep_branch

    stage = stage or (lambda name: contextlib.nullcontext())
    # the crops are computed once for every model, by the crop step the profile's branch has
    with stage("CNN crops"):
        crop = make_deep_branch(phases, **deep_settings(profile)).named_steps["crop"]
        crops = pd.DataFrame({"crop": list(crop.transform(Xp))}, index=Xp.index)

    def stack(ids):
        return np.stack(crops.loc[ids, "crop"].to_list()).astype(np.float32)

    tables = {}
    for mode in profile.modes:
        results = {}
        for backbone in profile.backbones:
            name = f"{mode.upper()}_{backbone}"
            t = time.perf_counter()
            with stage(f"CNN {name}"):
                branch = make_deep_branch(
                    phases,
                    **deep_settings(profile, backbone=backbone, mode=mode),
                    cv=profile.cv,
                    random_state=random_state,
                )
                model = Pipeline([(n, step) for n, step in branch.steps if n != "crop"])
                model = lasso_candidates(model, profile)
                model.fit(stack(split.tc), split.y_tc)
                results[name] = {
                    "TC": (split.y_tc, model.predict_proba(stack(split.tc))[:, 1]),
                    "VC": (split.y_vc, model.predict_proba(stack(split.vc))[:, 1]),
                }
            log(f"  {mode.upper()} {backbone}: trained in {time.perf_counter() - t:.1f} s")
        tables[mode] = diagnostic_table(results, reference_cohort="TC")
    return tables


def print_summary(tables, reproducibility=()):
    """Tables 1-5, the DeLong tests and the `reproducibility` summary lines, printed."""
    with pd.option_context(
        "display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40
    ):
        print("\nTable 1. Characteristics by P53 status")
        print(tables["table1"].to_string())
        print("\nTable 2. Odds ratios (training cohort)")
        if tables["table2"].attrs.get("note"):
            print(tables["table2"].attrs["note"])
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
        if tables.get("harmonisation_effect") is not None:
            effect = tables["harmonisation_effect"]
            print("\nThe radiomics model without and with ComBat harmonisation")
            shown = [c for c in effect.columns if c.endswith(("(95% CI)", "share", "chance"))]
            print(effect[shown].round(3).to_string())
        if reproducibility:
            print("\nReproducibility of the features (median feature's ICC, 95% CI)")
            print("\n".join(reproducibility))
        if tables.get("robustness") is not None:
            print("\nThe radiomics model with and without the robustness filter")
            print(tables["robustness"].round(3).to_string())


class StageClock:
    """Elapsed time since the run started, in each log line, and what each stage of the run cost.

    :meth:`stage` measures a stage's wall time, its CPU time (user + system) and its peak memory:

    - CPU: this process (every thread: PyTorch's, SimpleITK's), its child processes that ended
      (``RUSAGE_CHILDREN``) and, with psutil, its live ones: joblib's loky workers outlive the
      stages, so without psutil their CPU time is not counted;
    - ``peak_rss_mib``: this process's peak resident memory in the stage (Linux resets the peak
      at each stage through ``/proc/self/clear_refs``; elsewhere it is the peak since the process
      started);
    - ``peak_rss_all_mib``: the largest sum of the resident memory of this process and its child
      processes, sampled every 0.2 s with psutil (``NaN`` without it): a spike shorter than that
      can be missed, and pages the processes share are counted in each.

    Each stage's row is written to the CSV file `path` (where not ``None``) as it ends.
    """

    def __init__(self, path=None):
        self.start = time.perf_counter()
        self.path = path
        self.timings = {}
        self.rows = []
        self._memory = _MemorySampler() if psutil is not None else None
        self._started = _usage()
        self.peak_reset = False

    def log(self, message):
        print(f"[{time.perf_counter() - self.start:7.1f} s] {message}", flush=True)

    @contextmanager
    def stage(self, name, key=None):
        """Measure the stage `name`; its wall time is also added to ``timings[key]``."""
        self.peak_reset = _reset_peak_rss()
        if self._memory is not None:
            self._memory.reset()
        before, t = _usage(), time.perf_counter()
        yield
        wall = time.perf_counter() - t
        peak = _peak_rss_mib()
        self.rows.append(
            {
                "stage": name,
                "wall_s": wall,
                "cpu_s": _cpu_between(before, _usage()),
                "peak_rss_mib": peak,
                # at least the main process's own peak, which a sample can miss
                "peak_rss_all_mib": np.nan
                if self._memory is None
                else max(peak, self._memory.read()),
            }
        )
        if key is not None:
            self.timings[key] = self.timings.get(key, 0.0) + wall
        if self.path is not None:  # the stages so far: what a run stopped midway leaves
            pd.DataFrame(self.rows).to_csv(self.path, index=False)

    def total(self):
        """The run so far as one row: wall and CPU time (:func:`stage_table` adds the peaks)."""
        self.timings["total"] = time.perf_counter() - self.start
        cpu = _cpu_between(self._started, _usage())
        return {"stage": "total", "wall_s": self.timings["total"], "cpu_s": cpu}

    def close(self):
        if self._memory is not None:
            self._memory.stop()


def _usage():
    """CPU seconds of this process and its ended children, and of each live child process."""
    if resource is None:  # pragma: no cover - Windows
        cpu = time.process_time()
    else:
        own, ended = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        cpu = own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime
    live = {}
    for child in psutil.Process().children(recursive=True) if psutil is not None else ():
        try:
            t = child.cpu_times()
            live[child.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # ended in the meantime: its time is in RUSAGE_CHILDREN
            pass
    return cpu, live


def _cpu_between(before, after):
    """CPU seconds between two :func:`_usage`: a child that ended in between brought its whole
    life's time into ``RUSAGE_CHILDREN``, so its time before is taken off."""
    (cpu0, live0), (cpu1, live1) = before, after
    workers = sum(v - live0.get(pid, 0.0) for pid, v in live1.items())
    ended = sum(v for pid, v in live0.items() if pid not in live1)
    return cpu1 - cpu0 + workers - ended


def _reset_peak_rss():
    """Reset this process's peak RSS (Linux); ``False`` where the OS does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mib():
    if resource is None:  # pragma: no cover - Windows
        return np.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class _MemorySampler:
    """The largest total RSS of this process and its child processes since :meth:`reset`,
    sampled every 0.2 s by a daemon thread (psutil has no peak of another process)."""

    def __init__(self):
        self._me, self._peak, self._done = psutil.Process(), 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _sample(self):
        total = 0
        for process in [self._me, *self._me.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        self._peak = max(self._peak, total)

    def _run(self):
        while not self._done.wait(0.2):
            self._sample()

    def reset(self):
        self._peak = 0
        self._sample()

    def read(self):
        self._sample()
        return self._peak / 2**20

    def stop(self):
        self._done.set()


#: What the columns of :func:`stage_table` measure.
STAGE_NOTE = (
    "wall_s: elapsed seconds; cpu_s: user + system CPU seconds of the main process (all its "
    "threads), of its worker processes while they run (psutil) and of its ended child processes; "
    "peak_rss_mib: the main process's peak resident memory in the stage (MiB); peak_rss_all_mib: "
    "the largest total resident memory of the main and worker processes, sampled every 0.2 s; "
    "*_per_patient: the stage's seconds divided by the number of patients it worked on (the "
    "external cohort's for the external stages, the run's development cohort's for the others and "
    "the total), to extrapolate a short run (--n-patients, --n-external) to a larger cohort."
)


def stage_table(clock, n_patients, patients=None):
    """The stages a :class:`StageClock` measured and the run's total, as a DataFrame indexed by
    stage, with each stage's seconds per patient: per `patients[stage]` where given (e.g. the
    external cohort's stages), else per `n_patients`; ``attrs["n_patients"]`` is `n_patients`."""
    stages = pd.DataFrame(clock.rows)
    total = {**clock.total(), **stages[["peak_rss_mib", "peak_rss_all_mib"]].max()}
    table = pd.DataFrame([*clock.rows, total]).set_index("stage")
    counts = pd.Series(n_patients, index=table.index, dtype=float)
    for stage, n in (patients or {}).items():
        if stage in counts.index:
            counts[stage] = n
    for column in ("wall_s", "cpu_s"):
        table[f"{column}_per_patient"] = table[column] / counts
    table.attrs["n_patients"] = n_patients
    return table


def print_stages(table):
    """The stage table, printed."""
    print(f"\nRun time and memory by stage ({table.attrs['n_patients']} patients)")
    with pd.option_context("display.width", 200):
        print(table.round(3).to_string())
