"""Benchmark of one clinical-size synthetic case: generation, N4Resampler, extraction, cropper.

One patient of ``make_synthetic_cohort(..., field_of_view="abdomen")`` (380 x 310 x 200 mm at
0.74 x 0.74 x 3 mm: 514 x 419 x 67 voxels per phase, three phases and their masks) against one
patient of the default, CPU-sized field of view (same seed, same scanner). Each stage runs in a
fresh Python process, so its peak resident set size (``ru_maxrss``) is its own:

- ``generate``: writing the case (``make_synthetic_cohort``, ``n_repeated=0``), and the files' size;
- ``n4``: ``N4Resampler()`` with the study's settings (N4 at shrink 4, ROI + 30-mm margin
  cropped, 1-mm voxels, z-score), fit_transform of the case;
- ``extract``: ``RadiomicsExtractor`` with the quick profile's parameter set (the study's
  settings with the original image only, about 107 features per phase: the study's 1,223-feature
  set takes minutes per case on 2 cores), on the raw volumes and on N4Resampler's output;
- ``crop``: ``LargestSliceCropper()`` with its defaults (the study's 256-pixel crops) on the raw
  volumes and on N4Resampler's output (what the pipeline gives it).

``import`` is the baseline: the process after importing the package and its dependencies.

Usage::

    python benchmarks/bench_clinical_size.py [--out FILE.json]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("import", "generate", "n4", "extract", "crop")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _quick_params():
    """The quick profile's radiomics parameters, as its pipeline holds them."""
    from p53radiomics.study import profile_pipeline

    return profile_pipeline("quick", ["ltd"]).get_params()["fusion__radiomics__extract__params"]


def _preprocessed(folder):
    """N4Resampler's output of the case, rebuilt from the files the ``n4`` stage wrote."""
    import pandas as pd
    import SimpleITK as sitk

    table = pd.read_csv(folder / "n4" / "table.csv", index_col="patient_id")
    for column in ("ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask"):
        table[column] = [sitk.ReadImage(str(folder / "n4" / p)) for p in table[column]]
    return table


def _stage(name, folder, fov):
    """Run one stage in this process; return its figures."""
    import SimpleITK as sitk

    from p53radiomics.datasets import make_synthetic_cohort
    from p53radiomics.io import read_cohort_csv
    from p53radiomics.preprocessing import LargestSliceCropper, N4Resampler
    from p53radiomics.radiomics import RadiomicsExtractor

    cohort = folder / "cohort"
    figures = {}
    if name == "generate":
        start = time.perf_counter()
        X, _ = make_synthetic_cohort(cohort, n_patients=1, field_of_view=fov, n_repeated=0)
        figures["wall_s"] = time.perf_counter() - start
        files = sorted((cohort / "images").iterdir())
        figures["files_mb"] = sum(p.stat().st_size for p in files) / 1e6
        figures["shape_xyz"] = list(sitk.ReadImage(str(X["ap"].iloc[0])).GetSize())
        figures["scanner"] = X["scanner"].iloc[0]
    elif name == "n4":
        X, y = read_cohort_csv(cohort / "cohort.csv", label="p53")
        start = time.perf_counter()
        Z = N4Resampler().fit_transform(X, y)
        figures["wall_s"] = time.perf_counter() - start
        figures["out_shape_xyz"] = list(Z["ap"].iloc[0].GetSize())
        (folder / "n4").mkdir(exist_ok=True)
        for column in ("ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask"):
            sitk.WriteImage(Z[column].iloc[0], str(folder / "n4" / f"{column}.nrrd"))
            Z[column] = [f"{column}.nrrd"]
        Z.to_csv(folder / "n4" / "table.csv")
    elif name == "extract":
        X, y = read_cohort_csv(cohort / "cohort.csv", label="p53")
        params = _quick_params()
        start = time.perf_counter()
        raw = RadiomicsExtractor(params=params).fit_transform(X, y)
        figures["raw_wall_s"] = time.perf_counter() - start
        Z = _preprocessed(folder)
        start = time.perf_counter()
        RadiomicsExtractor(params=params).fit_transform(Z, y)
        figures["n4_wall_s"] = time.perf_counter() - start
        figures["n_features"] = int(raw.shape[1])
    elif name == "crop":
        X, y = read_cohort_csv(cohort / "cohort.csv", label="p53")
        start = time.perf_counter()
        LargestSliceCropper().fit_transform(X, y)
        figures["raw_wall_s"] = time.perf_counter() - start
        Z = _preprocessed(folder)
        start = time.perf_counter()
        crops = LargestSliceCropper().fit_transform(Z, y)
        figures["wall_s"] = time.perf_counter() - start
        figures["out_shape"] = list(crops.shape)
    figures["peak_rss_mb"] = _peak_mb()
    return figures


def _run_stage(name, folder, fov):
    command = [sys.executable, __file__, "--stage", name, "--folder", str(folder), "--fov", fov]
    done = subprocess.run(command, capture_output=True, encoding="utf-8", check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {name} ({fov}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(results):
    clinical, default = results["abdomen"], results["default"]
    base = clinical["import"]["peak_rss_mb"]
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}, "
        f"Python {platform.python_version()}, load average at the end "
        f"{os.getloadavg()[0]:.1f} (other jobs share the cores: wall times vary with them)",
        "one patient, three phases; peak RSS of a fresh process per stage "
        f"(after imports alone: {base:.0f} MB)",
        "",
        "| stage | abdomen (clinical size) | default FOV | ratio |",
        "|---|---|---|---|",
    ]

    def row(label, stage, key, unit):
        a, d = clinical[stage][key], default[stage][key]
        lines.append(f"| {label} | {a:.2f} {unit} | {d:.2f} {unit} | {a / d:.1f}x |")

    row("generation, wall", "generate", "wall_s", "s")
    row("generation, files on disk", "generate", "files_mb", "MB")
    row("generation, peak RSS", "generate", "peak_rss_mb", "MB")
    row("N4Resampler, wall", "n4", "wall_s", "s")
    row("N4Resampler, peak RSS", "n4", "peak_rss_mb", "MB")
    row("extraction on raw volumes, wall", "extract", "raw_wall_s", "s")
    row("extraction on N4Resampler output, wall", "extract", "n4_wall_s", "s")
    row("extraction, peak RSS", "extract", "peak_rss_mb", "MB")
    row("LargestSliceCropper on raw volumes, wall", "crop", "raw_wall_s", "s")
    row("LargestSliceCropper on N4Resampler output, wall", "crop", "wall_s", "s")
    row("LargestSliceCropper, peak RSS", "crop", "peak_rss_mb", "MB")
    lines += [
        "",
        f"volumes (x, y, z): abdomen {clinical['generate']['shape_xyz']}, default "
        f"{default['generate']['shape_xyz']} (scanner {clinical['generate']['scanner']}); "
        f"after N4Resampler: {clinical['n4']['out_shape_xyz']} and "
        f"{default['n4']['out_shape_xyz']}",
        f"radiomics: the quick profile's set (original image only), "
        f"{clinical['extract']['n_features']} features for the three phases",
        f"N4Resampler peak RSS above the imports: {clinical['n4']['peak_rss_mb'] - base:.0f} MB "
        f"for a clinical-size case",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fov", default="abdomen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(_stage(args.stage, args.folder, args.fov)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fov in ("abdomen", "default"):
            folder = Path(tmp) / fov
            folder.mkdir()
            results[fov] = {s: _run_stage(s, folder, fov) for s in STAGES}
            print(f"{fov}: {json.dumps(results[fov])}", flush=True)
    print(_report(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
