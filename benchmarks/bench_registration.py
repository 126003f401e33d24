"""One mask for all phases: how well the portal venous mask, carried to the other phases, fits them.

On a synthetic cohort (24 patients, default voxels), whose phases are shifted by about a
millimetre per axis between breath-holds, each patient's portal venous (pvp) mask is made the
shared ``mask`` of all three phases. ``N4Resampler(mask_phase="pvp")`` carries it to the arterial
and delayed phases without registration and with ``registration="rigid"``; the original table
(each phase with its own mask) goes through the same ``N4Resampler``. The script prints, per phase,
the mean and minimum Dice of the carried mask against the phase's own, before and after
registration, the registration's seconds per (patient, phase) pair and per patient, and the
translations it found.

    python benchmarks/bench_registration.py [--n-patients 24] [--n-jobs 1]

Bias correction is off (it does not move a mask) and ``margin_mm=None`` puts every output of a
phase on one 1-mm grid, so the Dice is taken voxel by voxel. The cohort is written to a temporary
folder, removed after.
"""

import argparse
import platform
import tempfile
import time

import numpy as np
import pandas as pd
import SimpleITK as sitk

from p53radiomics import N4Resampler
from p53radiomics.datasets import make_synthetic_cohort

OTHER_PHASES = ("ap", "dp")


def dice(a, b):
    a, b = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=24)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: 2-core CPU sandbox, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench_registration_") as work:
        start = time.perf_counter()
        X, _ = make_synthetic_cohort(work, n_patients=args.n_patients, random_state=0)
        print(f"cohort: {len(X)} patients ({time.perf_counter() - start:.0f} s)")
        own = X[["ap", "ap_mask", "pvp", "pvp_mask", "dp", "dp_mask"]]
        shared = own.drop(columns=["ap_mask", "pvp_mask", "dp_mask"]).assign(mask=own["pvp_mask"])
        settings = {"bias_correction": False, "margin_mm": None, "n_jobs": args.n_jobs}
        truth = N4Resampler(**settings).fit_transform(own)
        outputs, steps = {}, {}
        for registration in (None, "rigid"):
            step = N4Resampler(mask_phase="pvp", registration=registration, **settings)
            start = time.perf_counter()
            outputs[registration] = step.fit_transform(shared)
            steps[registration] = (step, time.perf_counter() - start)
    rows = []
    for pid in X.index:
        for phase in OTHER_PHASES:
            reference = truth.at[pid, f"{phase}_mask"]
            rows.append(
                {
                    "patient": pid,
                    "phase": phase,
                    "before": dice(outputs[None].at[pid, f"{phase}_mask"], reference),
                    "after": dice(outputs["rigid"].at[pid, f"{phase}_mask"], reference),
                }
            )
    table = pd.DataFrame(rows)
    summary = table.groupby("phase")[["before", "after"]].agg(["mean", "min"])
    summary.loc["both"] = table[["before", "after"]].agg(["mean", "min"]).T.stack()
    print("Dice of the carried pvp mask against the phase's own mask (before / after registration)")
    print(summary.round(3).to_string())
    improved = int((table["after"] > table["before"]).sum())
    print(f"pairs improved: {improved} of {len(table)}")
    registrations = steps["rigid"][0].registrations_
    seconds = registrations["seconds"]
    print(
        f"registration: {seconds.mean():.2f} s per (patient, phase) pair (min {seconds.min():.2f},"
        f" max {seconds.max():.2f}), {seconds.groupby(level=0).sum().mean():.2f} s per patient"
        f" (2 pairs); mean {registrations['iterations'].mean():.0f} iterations"
    )
    print(
        f"transform wall time: {steps[None][1]:.1f} s without registration, "
        f"{steps['rigid'][1]:.1f} s with (n_jobs={args.n_jobs})"
    )
    print(
        f"translations found: median {registrations['translation_mm'].median():.2f} mm, max "
        f"{registrations['translation_mm'].max():.2f} mm; rotation max "
        f"{registrations['rotation_deg'].max():.2f} degrees"
    )


if __name__ == "__main__":
    main()
