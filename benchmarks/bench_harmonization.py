"""Benchmark of ComBat harmonisation in the radiomics branch (issue 9): validation AUC and the
scanner footprint left in the features, with and without ``harmonize=True``.

On the synthetic cohort (:func:`p53radiomics.datasets.make_synthetic_cohort`, 320 patients over 7
simulated scanners), with the study's quick profile (:data:`p53radiomics.study.PROFILES`: the
preprocessing and radiomics settings of ``profile_pipeline("quick")``) and the study's split (7:3,
stratified, ``random_state``):

1. the radiomics branch (:func:`p53radiomics.pipeline.make_radiomics_branch`) is fitted on the
   training cohort without and with harmonisation, and its validation AUC printed with the 95%
   DeLong interval (:func:`p53radiomics.metrics.roc_auc_ci`);
2. the between-scanner variance of the feature means on the validation cohort (each feature divided
   by its training SD; variance over scanners of the scanners' means, summed over the features),
   before and after the harmoniser fitted on the training cohort: what ComBat removes from data it
   never saw. It is also given apart for the features with a clear scanner effect in the training
   cohort (Kruskal-Wallis p < 0.001 there, so the choice uses no validation data) and for the
   others, and on the training cohort itself (in-sample, for reference);
3. the share of features with a significant scanner effect on the validation cohort (Kruskal-Wallis
   p < 0.001 across its scanners), before and after the harmoniser fitted on the training cohort:
   the scanner effects that survive N4 correction, resampling and z-scoring, and what ComBat leaves.

Preprocessing and extraction are cached under the work folder, so each case is computed once.

Run: ``python benchmarks/bench_harmonization.py [--workdir DIR] [--n-patients 320] [--n-jobs -1]``.
Without ``--workdir`` a temporary folder is used and deleted afterwards.
"""

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from p53radiomics.datasets import make_synthetic_cohort
from p53radiomics.metrics import delong_test, roc_auc_ci
from p53radiomics.pipeline import make_radiomics_branch
from p53radiomics.study import PROFILES, profile_pipeline

PHASES = ("ap", "pvp", "dp")


def _between_scanner_variance(features, scanner, scale):
    """Sum over the features of the variance over scanners of each scanner's mean (feature / scale)."""
    means = pd.DataFrame(np.asarray(features) / scale).groupby(np.asarray(scanner)).mean()
    return float(means.var(axis=0).sum())


#: A feature has a scanner effect where its Kruskal-Wallis p-value across scanners is below this.
SCANNER_EFFECT_P = 1e-3


def scanner_effect_p(features, scanner):
    """Kruskal-Wallis p-value of each feature across scanners (NaN for a constant feature).

    Also used by ``bench_external.py``.
    """
    import warnings

    from scipy.stats import kruskal

    features, scanner = np.asarray(features), np.asarray(scanner)
    with warnings.catch_warnings():  # a feature constant over the cohort has no p-value
        warnings.simplefilter("ignore", RuntimeWarning)
        return kruskal(*(features[scanner == s] for s in np.unique(scanner)), axis=0).pvalue


def run(workdir, n_patients, n_jobs, random_state, test_size=0.3):
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    X, y = make_synthetic_cohort(
        workdir / "cohort", n_patients=n_patients, random_state=random_state, n_jobs=n_jobs
    )
    log(f"cohort: {len(X)} patients, scanners {X['scanner'].value_counts().sort_index().to_dict()}")
    tc, vc = train_test_split(X.index, test_size=test_size, stratify=y, random_state=random_state)
    y_tc, y_vc = y.loc[tc].to_numpy(), y.loc[vc].to_numpy()

    profile = PROFILES["quick"]
    study = profile_pipeline(
        profile, ["ltd"], cache_dir=workdir / "cache", n_jobs=n_jobs, random_state=random_state
    )
    extract = dict(study.named_steps["fusion"].estimators)["radiomics"].named_steps["extract"]
    Xp = study.named_steps["preprocess"].transform(X)
    log("preprocessed (N4, crop, resampling, normalisation; quick profile, cached)")

    results = {}
    for harmonize in (False, True):
        branch = make_radiomics_branch(
            PHASES,
            params=extract.params,
            cache_dir=extract.cache_dir,
            n_jobs=n_jobs,
            cv=profile.cv,
            random_state=random_state,
            harmonize=harmonize,
        )
        t = time.perf_counter()
        branch.fit(Xp.loc[tc], y_tc)
        score = branch.predict_proba(Xp.loc[vc])[:, 1]
        results[harmonize] = (branch, roc_auc_ci(y_vc, score), score)
        log(f"radiomics branch, harmonize={harmonize}: fitted in {time.perf_counter() - t:.1f} s")

    harmonizer = results[True][0].named_steps["harmonize"]
    with_scanner = results[True][0].named_steps["extract"].transform(Xp)
    features = with_scanner.drop(columns="scanner")
    scale = features.loc[tc].std().to_numpy()
    scale[scale == 0] = 1.0
    variances = {}
    effect = scanner_effect_p(features.loc[tc], X.loc[tc, "scanner"]) < SCANNER_EFFECT_P
    for cohort, rows in (("validation", vc), ("training", tc)):
        scanner = X.loc[rows, "scanner"]
        raw, harmonised = (
            features.loc[rows].to_numpy(),
            harmonizer.transform(with_scanner.loc[rows]),
        )
        for subset, keep in (("all", slice(None)), ("effect", effect), ("other", ~effect)):
            variances[cohort, subset] = (
                _between_scanner_variance(raw[:, keep], scanner, scale[keep]),
                _between_scanner_variance(harmonised[:, keep], scanner, scale[keep]),
            )

    scanner_vc = X.loc[vc, "scanner"]
    shares = {
        "raw": scanner_effect_p(features.loc[vc], scanner_vc) < SCANNER_EFFECT_P,
        "after ComBat": scanner_effect_p(harmonizer.transform(with_scanner.loc[vc]), scanner_vc)
        < SCANNER_EFFECT_P,
    }
    print()
    print(f"synthetic cohort: {len(X)} patients, {X['scanner'].nunique()} scanners; "
          f"split {len(tc)} training / {len(vc)} validation (stratified, random_state={random_state})")  # fmt: skip
    print(f"radiomics features: {features.shape[1]} ({len(PHASES)} phases, quick profile)")
    for harmonize, (_, (auc, low, high), _) in results.items():
        name = "with ComBat   " if harmonize else "without ComBat"
        print(f"validation AUC {name}: {auc:.3f} (95% CI {low:.3f}-{high:.3f})")
    z, p = delong_test(y_vc, results[True][2], results[False][2])
    print(f"DeLong test, with vs without ComBat: z = {z:.2f}, p = {p:.3f}")
    print(
        "between-scanner variance of feature means (features in training SD units, summed over "
        "the features; raw -> harmonised, reduction):"
    )
    counts = {"all": features.shape[1], "effect": int(effect.sum()), "other": int((~effect).sum())}
    labels = {
        "all": "all features",
        "effect": "with a scanner effect in training (Kruskal-Wallis p<0.001)",
        "other": "the other features",
    }
    for (cohort, subset), (raw, harmonised) in variances.items():
        print(
            f"  {cohort:10s} {labels[subset]} ({counts[subset]}): {raw:.2f} -> {harmonised:.2f}, "
            f"{100 * (1 - harmonised / raw):.1f}%"
        )
    for name, values in shares.items():
        print(f"validation features with a scanner effect (Kruskal-Wallis p<0.001), {name}: "
              f"{values.sum()} of {values.size} ({100 * values.mean():.1f}%)")  # fmt: skip
    print(
        f"total {time.perf_counter() - start:.0f} s on {platform.processor() or platform.machine()}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="kept; default: a temp folder")
    parser.add_argument("--n-patients", type=int, default=320)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_harmonization_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(workdir.resolve(), args.n_patients, args.n_jobs, args.random_state)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
