"""Table 5 of the demo over several seeds: each model's AUC in the training, validation and external
cohorts, and the radiomics model's AUC without and with ComBat harmonisation.

Ninety-six validation patients make one AUC noisy (its 95% interval spans about +-0.1), so one demo
run cannot say whether the synthetic cohort tells the study's story (issue 18): the clinical and
deep models in the 0.65-0.75 band in the validation cohort, the radiomics model clearly below
them, the combined model at least as good as the best single model. This script runs the demo
(:func:`p53radiomics.study.run_study`, a new synthetic cohort and split per seed) for seeds
0 .. N-1 and prints, per model and cohort, the mean +- SD of the AUC over the seeds, each seed's
AUC, and how often the combined model is at least as good as the best single model in the
validation cohort. Each demo also scores its model on a synthetic external site (EV, three scanners
absent from training, ``--n-external`` patients; the demo's default without it) and refits its
radiomics model without ComBat, with ComBat (pooled estimates for the external scanners) and with
ComBat adapted to the external scanners (the demo's ``harmonisation_effect`` table): the mean +- SD
of those AUCs and of the between-scanner share of the features is printed too.

    python benchmarks/bench_study.py [--seeds 5] [--profile quick] [--n-patients 320]
                                     [--n-external N] [--n-jobs -1] [--out DIR] [--csv FILE]
                                     [--radiomics {original,study}]

``--radiomics`` replaces the profile's radiomics feature set: ``study`` is the study's 1,223
features per phase (the quick profile's default is ``original``, about 107 per phase), to measure
whether more candidate features change the radiomics model's standing.

Each seed writes its demo output under ``DIR/seed<k>`` (a temporary folder, deleted afterwards,
without ``--out``); ``--csv`` saves every seed's Table 5 rows (and, beside it, ``*_harmonisation.csv``
every seed's harmonisation table).
"""

import argparse
import dataclasses
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from p53radiomics.study import PROFILES, run_study

# The models of Table 5, in its order, and the single models the combined one is compared with.
SINGLE = ("Clinical model", "Radiomics model", "DL model")
COMBINED = "Combined model"
COHORTS = ("TC", "VC", "EV")
#: The harmonisation table's columns summarised over the seeds.
HARMONISATION = ("VC AUC", "EV AUC", "VC between-scanner share", "EV between-scanner share")


def _cpu():
    """The CPU's model name (Linux's /proc/cpuinfo) and core count, else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def _summary(rows):
    """Mean, SD and each seed's AUC per (model, cohort), in Table 5's order."""
    table = rows.pivot_table(index=["model", "cohort"], columns="seed", values="auc")
    order = [(m, c) for m in (*SINGLE, COMBINED) for c in COHORTS if (m, c) in table.index]
    table = table.loc[order]
    return table.assign(mean=table.mean(axis=1), sd=table.std(axis=1, ddof=1))


def _print_harmonisation(table, n_seeds):
    """Mean +- SD over the seeds of each harmonisation setting's AUCs and between-scanner shares."""
    print(f"\nThe radiomics model without and with ComBat over {n_seeds} seeds: mean +- SD "
          "(between-scanner share: the median feature's share of variance between scanners)")  # fmt: skip
    key = table.columns[0]  # the setting, the harmonisation table's index
    for setting, group in table.groupby(key, sort=False):
        cells = [f"{c} {group[c].mean():.3f} +- {group[c].std(ddof=1):.3f}" for c in HARMONISATION]
        print(f"  {setting}: " + ", ".join(cells))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n-patients", type=int, default=320)
    parser.add_argument("--n-external", type=int, default=None, help="default: the demo's")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--out", type=Path, default=None, help="kept; default: a temp folder")
    parser.add_argument("--csv", type=Path, default=None, help="every seed's Table 5 rows")
    parser.add_argument("--radiomics", choices=("original", "study"), default=None,
                        help="the radiomics feature set (default: the profile's)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be 2 or more (an SD needs two seeds)")
    profile = PROFILES[args.profile]
    if args.radiomics is not None:
        profile = dataclasses.replace(profile, radiomics=args.radiomics)
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_study_"))
    start = time.perf_counter()
    rows, harmonisation = [], []
    try:
        for seed in range(args.seeds):
            t = time.perf_counter()
            # no repeated ROIs: the reproducibility stage's cost saved, the same images and Table 5
            result = run_study(work / f"seed{seed}", profile=profile,
                               n_patients=args.n_patients, random_state=seed, n_jobs=args.n_jobs,
                               n_repeated=0, n_external=args.n_external)  # fmt: skip
            table5 = result.tables["table5"]
            rows.append(table5[["model", "cohort", "n", "auc"]].assign(seed=seed))
            if result.tables.get("harmonisation_effect") is not None:
                effect = result.tables["harmonisation_effect"]
                harmonisation.append(effect[list(HARMONISATION)].assign(seed=seed).reset_index())
            vc = table5[table5["cohort"] == "VC"].set_index("model")["auc"]
            print(f"seed {seed}: VC AUC " + ", ".join(f"{m} {a:.3f}" for m, a in vc.items())
                  + f" ({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
            if args.out is None:
                shutil.rmtree(work / f"seed{seed}", ignore_errors=True)
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = pd.concat(rows, ignore_index=True)
    if args.csv is not None:
        rows.to_csv(args.csv, index=False)
        if harmonisation:
            pd.concat(harmonisation).to_csv(args.csv.with_name(f"{args.csv.stem}_harmonisation.csv"),
                                            index=False)  # fmt: skip
    summary = _summary(rows)
    print()
    print(f"Table 5 AUC over {args.seeds} seeds (synthetic cohort of {args.n_patients} patients, "
          f"profile {args.profile!r}, radiomics {profile.radiomics!r}, a new cohort and split per "
          "seed): mean +- SD")  # fmt: skip
    for (model, cohort), line in summary.iterrows():
        seeds = " ".join(f"{line[s]:.3f}" for s in range(args.seeds))
        print(f"  {model:16s} {cohort}  {line['mean']:.3f} +- {line['sd']:.3f}   seeds: {seeds}")
    vc = summary.xs("VC", level="cohort")
    best_single = vc.loc[list(SINGLE), list(range(args.seeds))].max()
    wins = int((vc.loc[COMBINED, list(range(args.seeds))] >= best_single).sum())
    print(f"combined model >= best single model in VC: {wins} of {args.seeds} seeds")
    if harmonisation:
        _print_harmonisation(pd.concat(harmonisation, ignore_index=True), args.seeds)
    print(f"total {time.perf_counter() - start:.0f} s on {_cpu()} "
          f"({platform.python_implementation()} {platform.python_version()})")  # fmt: skip


if __name__ == "__main__":
    main()
