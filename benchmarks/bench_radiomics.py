"""Benchmark of RadiomicsExtractor (DESIGN §6, issue 4): overhead, parallel speed-up, cache.

On synthetic cases with the default parameters (the study's 1,223 features per phase):

1. overhead: ``RadiomicsExtractor(n_jobs=1)`` against a loop calling PyRadiomics's
   ``RadiomicsFeatureExtractor.execute`` directly on the same files (goal: <= 5% slower);
2. ``n_jobs=2`` against ``n_jobs=1`` (goal: >= 1.8x on 2 cores), with the worker pool already
   started (its start-up, paid once per process, is printed apart);
3. a re-run that finds every case in the cache against the extraction without cache (goal: >= 50x).

The cases come from :func:`p53radiomics.datasets.make_synthetic_cohort`, made to look like
N4Resampler's output with SimpleITK (crop around the tumour with a 30-mm margin, resampling to
1 mm, z-score over the crop), so that the tumours are at the study's scale. Times are wall-clock
minima over ``--repeats`` interleaved runs (the machine may be shared).

Run: ``python benchmarks/bench_radiomics.py [--n-patients 6] [--repeats 2]``.
"""

import argparse
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from sklearn.base import clone

from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.radiomics import DEFAULT_PARAMS_FILE, RadiomicsExtractor

PHASES = ("ap", "pvp", "dp")


def _preprocess_like(image, mask, margin_mm=30.0, spacing=1.0):
    """Crop around the ROI with a margin, resample to `spacing` mm, z-score over the crop."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask != 0, sitk.sitkUInt8))
    box = np.asarray(stats.GetBoundingBox(1))
    pad = np.ceil(margin_mm / np.asarray(image.GetSpacing())).astype(int)
    start = np.maximum(box[:3] - pad, 0)
    stop = np.minimum(box[:3] + box[3:] + pad, image.GetSize())
    crop = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    image, mask = image[crop], mask[crop]
    size = [
        int(round(n * s / spacing))
        for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)
    ]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing((spacing,) * 3)
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    image = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear
    )
    mask = sitk.Resample(
        mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )
    return sitk.Normalize(image), mask


def make_cases(folder, n_patients):
    raw, _ = make_synthetic_cohort(folder / "raw", n_patients=n_patients, random_state=0)
    out = folder / "preprocessed"
    out.mkdir()
    table = {}
    for pid in raw.index:
        row = {}
        for phase in PHASES:
            image, mask = _preprocess_like(
                sitk.ReadImage(raw.at[pid, phase]), sitk.ReadImage(raw.at[pid, f"{phase}_mask"])
            )
            row[phase], row[f"{phase}_mask"] = (
                str(out / f"{pid}_{phase}.nii.gz"),
                str(out / f"{pid}_{phase}_mask.nii.gz"),
            )
            sitk.WriteImage(image, row[phase])
            sitk.WriteImage(mask, row[f"{phase}_mask"])
        table[pid] = row
    X = pd.DataFrame.from_dict(table, orient="index")
    return X, raw["ltd"]


def direct_pyradiomics(X):
    """PyRadiomics called directly, case by case, the way a script would."""
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(str(DEFAULT_PARAMS_FILE))
    rows = {}
    for pid in X.index:
        row = {}
        for phase in PHASES:
            result = extractor.execute(X.at[pid, phase], X.at[pid, f"{phase}_mask"])
            row.update(
                {
                    f"{phase}_{k}": float(v)
                    for k, v in result.items()
                    if not k.startswith("diagnostics_")
                }
            )
        rows[pid] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def timed(function):
    """Wall-clock seconds, and the result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def timed_cpu(function):
    """(wall-clock seconds, CPU seconds of this process), and the result."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return (time.perf_counter() - start, time.process_time() - cpu), result


def load():
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_overhead(X, n, repeats):
    """1. RadiomicsExtractor(n_jobs=1) against PyRadiomics called directly; returns its features."""
    ours = RadiomicsExtractor(phases=PHASES, n_jobs=1)
    t_direct, t_ours = [], []
    for _ in range(repeats):  # interleaved, so that both see the same load
        t, direct = timed_cpu(lambda: direct_pyradiomics(X))
        t_direct.append(t)
        t, features = timed_cpu(lambda: clone(ours).transform(X))
        t_ours.append(t)
    direct = direct[features.columns]
    relative = np.abs(features.to_numpy() - direct.to_numpy()) / np.maximum(
        np.abs(direct.to_numpy()), 1e-300
    )
    print(f"\n1. overhead ({load()})")
    best = {}
    for label, runs in (("direct PyRadiomics", t_direct), ("RadiomicsExtractor n_jobs=1", t_ours)):
        w, c = min(w for w, _ in runs), min(c for _, c in runs)
        best[label] = (w, c)
        shown = ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs)
        print(
            f"   {label:28s}: wall {w:6.2f} s, CPU {c:6.2f} s ({c / n:.2f} s CPU per extraction); "
            f"runs wall/CPU: {shown}"
        )
    (dw, dc), (ow, oc) = best.values()
    print(
        f"   overhead: wall {100 * (ow / dw - 1):+.1f}%, CPU {100 * (oc / dc - 1):+.1f}%  (goal <= +5%)"
    )
    print(
        f"   values: {int((relative == 0).sum())} of {relative.size} identical, largest relative "
        f"difference {relative.max():.1e} (SimpleITK on 1 thread here, on {os.cpu_count()} in the direct calls)"
    )
    return features


def bench_parallel(X, repeats):
    """2. n_jobs=2 against n_jobs=1, the worker pool started beforehand."""
    serial, parallel = (RadiomicsExtractor(phases=PHASES, n_jobs=k) for k in (1, 2))
    t_start, _ = timed(lambda: clone(parallel).set_params(phases=("ap",)).transform(X.iloc[:2]))
    t_serial, t_parallel = [], []
    for _ in range(repeats):
        t, a = timed(lambda: clone(serial).transform(X))
        t_serial.append(t)
        t, b = timed(lambda: clone(parallel).transform(X))
        t_parallel.append(t)
    assert np.array_equal(a.to_numpy(), b.to_numpy()), "n_jobs=2 differs from n_jobs=1"
    s, p = min(t_serial), min(t_parallel)
    print(f"\n2. parallel ({load()})")
    print(f"   n_jobs=1: wall {s:6.2f} s; runs {', '.join(f'{t:.1f}' for t in t_serial)}")
    print(f"   n_jobs=2: wall {p:6.2f} s; runs {', '.join(f'{t:.1f}' for t in t_parallel)}")
    print(f"   speed-up: {s / p:.2f}x  (goal >= 1.8x on 2 free cores); values identical")
    print(
        f"   (worker pool start-up with a 2-case warm-up, paid once per process: {t_start:.2f} s)"
    )
    # What two free cores would give with these task sizes: the CPU time of each (patient, phase)
    # extraction, dispatched in order to the first free worker, as joblib does.
    cpu = []
    for pid in X.index:
        for phase in PHASES:
            one = RadiomicsExtractor(phases=(phase,))
            (_, c), _ = timed_cpu(lambda one=one, pid=pid: one.transform(X.loc[[pid]]))
            cpu.append(c)
    workers = [0.0, 0.0]
    for c in cpu:
        workers[workers.index(min(workers))] += c
    print(
        f"   CPU per extraction {min(cpu):.2f}-{max(cpu):.2f} s, {sum(cpu):.1f} s in all: on 2 free "
        f"cores this schedule allows {sum(cpu) / max(workers):.2f}x (the runs above share the cores)"
    )


def bench_cache(X, n, folder):
    """3. A re-run that finds every case in the cache, against extracting."""
    cached = RadiomicsExtractor(phases=PHASES, n_jobs=1, cache_dir=folder)
    t_plain, plain = timed(lambda: RadiomicsExtractor(phases=PHASES, n_jobs=1).transform(X))
    t_fill, _ = timed(lambda: clone(cached).transform(X))
    second = clone(cached)  # as in cross-validation: a clone
    t_hit, hit = timed(lambda: second.transform(X))
    assert second.cache_hits_ == n and second.cache_misses_ == 0
    assert np.array_equal(hit.to_numpy(), plain.to_numpy())
    print(f"\n3. cache ({load()})")
    print(
        f"   extraction without cache: {t_plain:.2f} s; first run filling the cache: {t_fill:.2f} s"
    )
    print(
        f"   re-run from the cache: {t_hit:.3f} s: {t_plain / t_hit:.0f}x faster than extracting (goal >= 50x)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--parts", default="123", help="which measurements: 1 overhead, 2 parallel, 3 cache"
    )
    args = parser.parse_args()
    import radiomics  # noqa: F401  (its import sets its logger's level: import it first)

    logging.getLogger("radiomics").setLevel(logging.ERROR)  # the direct calls: as quiet as ours
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs visible (possibly shared); {load()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        X, ltd = make_cases(tmp, args.n_patients)
        voxels = [
            int(sitk.GetArrayFromImage(sitk.ReadImage(X.at[p, f"{ph}_mask"])).sum())
            for p in X.index
            for ph in PHASES
        ]
        n = len(X) * len(PHASES)
        n_features = RadiomicsExtractor(phases=("ap",)).get_feature_names_out().size
        print(
            f"cases: {len(X)} patients x {len(PHASES)} phases = {n} extractions; tumour diameter "
            f"{ltd.min():.0f}-{ltd.max():.0f} mm; ROI {min(voxels)}-{max(voxels)} voxels at 1 mm; "
            f"default parameters: {n_features} features per phase"
        )
        if "1" in args.parts:
            bench_overhead(X, n, args.repeats)
        if "2" in args.parts:
            bench_parallel(X, args.repeats)
        if "3" in args.parts:
            bench_cache(X, n, tmp / "cache")


if __name__ == "__main__":
    main()
