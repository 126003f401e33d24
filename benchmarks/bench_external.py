"""Benchmark of ComBat on an external site (issue 18): the radiomics branch's validation and
external AUCs without harmonisation, with ComBat's pooled estimates for the external scanners, and
with ComBat adapted to them from their own unlabelled features.

A development cohort (:func:`p53radiomics.datasets.make_synthetic_cohort`, 320 patients over the 7
development scanners, ``random_state``) is split as the study splits it (7:3, stratified); an
external cohort (96 patients, ``random_state + 1``) is drawn from
:data:`p53radiomics.datasets.EXTERNAL_SCANNERS`, none of which the development cohort has. With the
study's quick profile (:data:`p53radiomics.study.PROFILES`: the preprocessing and radiomics
settings of ``profile_pipeline("quick")``):

1. :func:`p53radiomics.study.harmonisation_effect` (the demo's ``harmonisation_effect`` table)
   fits the radiomics branch of the quick profile on the training cohort without and with
   harmonisation, adapts its ComBat step to the external scanners and scores both cohorts; its
   table (AUCs and the median between-scanner share of the features in VC and EV) is printed;
2. the validation (VC) and external (EV) AUCs are printed with their 95% DeLong intervals
   (:func:`p53radiomics.metrics.roc_auc_ci`) for: no harmonisation; ComBat, the external scanners
   harmonised with the pooled estimates of the training scanners (what ``transform`` does with a
   scanner it never saw); ComBat adapted to the external scanners by
   :func:`p53radiomics.harmonization.adapt_to_new_batches` on the external features (never the
   labels), relative to the training standardisation; and, for contrast, the pitfall: the branch's
   ComBat step replaced by one fitted on the external features alone;
3. the share of external features with a scanner effect (Kruskal-Wallis p < 0.001 across the
   external scanners): raw, with the pooled estimates (one affine map for every unseen scanner,
   which leaves a rank test across them as it was), adapted, and fitted on the external site;
4. how far the external features lie from the training reference, the frame the branch's steps
   after ComBat were fitted in: per feature, the distance between the external mean and the
   training patients' mean (both harmonised, or both raw), in training SDs; the median over the
   features. A ComBat fitted on the external site alone removes the differences between its
   scanners (item 3) but not the site's offset from the training cohort (this item).

The adapted harmoniser learns from the same external patients it is then evaluated on (their
features only): a transductive evaluation, as a site adapting a model to its own scanners would do.
Preprocessing and extraction are cached under the work folder, so each case is computed once.

Run: ``python benchmarks/bench_external.py [--workdir DIR] [--n-patients 320] [--n-external 96]
[--n-jobs -1]``. Without ``--workdir`` a temporary folder is used and deleted afterwards.
"""

import argparse
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_harmonization import SCANNER_EFFECT_P, scanner_effect_p  # same folder
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from p53radiomics import ComBatHarmonizer
from p53radiomics.datasets import EXTERNAL_SCANNERS, make_synthetic_cohort
from p53radiomics.exceptions import UnseenBatchWarning
from p53radiomics.metrics import delong_test, roc_auc_ci
from p53radiomics.study import PROFILES, harmonisation_effect, profile_pipeline

PHASES = ("ap", "pvp", "dp")


def _scanner_effect_share(features, scanner):
    """Count and share of features with a scanner effect (:data:`SCANNER_EFFECT_P`)."""
    significant = scanner_effect_p(features, scanner) < SCANNER_EFFECT_P  # NaN: no effect
    return int(significant.sum()), float(significant.mean())


def _offset(features, reference):
    """Median over the features of |mean - reference mean| / reference SD (constant ones left out)."""
    features, reference = np.asarray(features), np.asarray(reference)
    sd = reference.std(axis=0)
    gap = np.abs(features.mean(axis=0) - reference.mean(axis=0))[sd > 0] / sd[sd > 0]
    return float(np.median(gap))


def _with_harmonizer(branch, harmonizer):
    """The fitted branch with its ``harmonize`` step replaced (the other fitted steps shared)."""
    return Pipeline([(n, harmonizer if n == "harmonize" else s) for n, s in branch.steps])


def run(workdir, n_patients, n_external, n_jobs, random_state, test_size=0.3):
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    X, y = make_synthetic_cohort(
        workdir / "cohort", n_patients=n_patients, random_state=random_state, n_jobs=n_jobs
    )
    X_ev, y_ev = make_synthetic_cohort(
        workdir / "external",
        n_patients=n_external,
        random_state=random_state + 1,
        scanners=EXTERNAL_SCANNERS,
        n_jobs=n_jobs,
    )
    for name, cohort in (("development", X), ("external", X_ev)):
        counts = cohort["scanner"].value_counts().sort_index().to_dict()
        log(f"{name} cohort: {len(cohort)} patients, scanners {counts}")
    tc, vc = train_test_split(X.index, test_size=test_size, stratify=y, random_state=random_state)
    y_tc, y_vc, y_ev = y.loc[tc].to_numpy(), y.loc[vc].to_numpy(), y_ev.to_numpy()

    study = profile_pipeline(
        PROFILES["quick"], ["ltd"], cache_dir=workdir / "cache", n_jobs=n_jobs,
        random_state=random_state,
    )  # fmt: skip
    radiomics = dict(study.named_steps["fusion"].estimators)["radiomics"]  # the demo's settings
    Xp = study.named_steps["preprocess"].transform(X)
    Xp_ev = study.named_steps["preprocess"].transform(X_ev)
    log("preprocessed both cohorts (N4, crop, resampling, normalisation; quick profile, cached)")

    # the library's measurement (the demo's harmonisation_effect table): the radiomics branch
    # fitted on the TC without and with ComBat, and ComBat adapted to the EV scanners
    t = time.perf_counter()
    cohorts = {"VC": (Xp.loc[vc], y_vc), "EV": (Xp_ev, y_ev)}
    effect = harmonisation_effect(radiomics, Xp.loc[tc], y_tc, cohorts, external="EV")
    log(
        f"harmonisation_effect (two branch fits, adaptation, scores) in {time.perf_counter() - t:.1f} s"
    )
    none, pooled_row, adapted_row = effect.table.index
    combat = effect.branches[pooled_row]
    harmonizer = combat.named_steps["harmonize"]
    adapted = effect.branches[adapted_row].named_steps["harmonize"]
    ev_features = effect.features["EV"]  # features + scanner, no labels
    fresh = ComBatHarmonizer(harmonizer.batch_column).fit(ev_features)
    results = {row: (scores["VC"], scores["EV"]) for row, scores in effect.scores.items()}
    with warnings.catch_warnings():  # the pitfall's harmoniser knows the EV scanners only: no VC
        warnings.simplefilter("ignore", UnseenBatchWarning)
        pitfall = _with_harmonizer(combat, fresh).predict_proba(Xp_ev)[:, 1]
    results["ComBat fitted on EV alone (pitfall)"] = (None, pitfall)

    raw = ev_features.drop(columns=harmonizer.batch_column)
    scanner = ev_features[harmonizer.batch_column]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenBatchWarning)
        pooled = harmonizer.transform(ev_features)
    tc_features = combat.named_steps["extract"].transform(Xp.loc[tc])  # cached
    reference = harmonizer.transform(tc_features)  # the training reference frame
    representations = {
        "raw": (raw, tc_features.drop(columns=harmonizer.batch_column)),
        "ComBat, pooled estimates": (pooled, reference),
        "ComBat adapted": (adapted.transform(ev_features), reference),
        "ComBat fitted on EV alone": (fresh.transform(ev_features), reference),
    }
    shares = {k: _scanner_effect_share(v, scanner) for k, (v, _) in representations.items()}
    offsets = {k: _offset(v, ref) for k, (v, ref) in representations.items()}

    print()
    print(f"development cohort: {len(X)} patients, {X['scanner'].nunique()} scanners; split "
          f"{len(tc)} training / {len(vc)} validation (stratified, random_state={random_state})")  # fmt: skip
    print(f"external cohort: {len(X_ev)} patients on {X_ev['scanner'].nunique()} scanners unseen "
          f"in training ({', '.join(sorted(X_ev['scanner'].unique()))}; "
          f"random_state={random_state + 1})")  # fmt: skip
    print(f"radiomics features: {raw.shape[1]} ({len(PHASES)} phases, quick profile)")
    shown = [c for c in effect.table.columns if c.endswith(("(95% CI)", "share", "chance"))]
    print("harmonisation_effect (p53radiomics.study; between-scanner share: median over the "
          "features of the share of variance between scanners, eta squared)")  # fmt: skip
    print(effect.table[shown].round(3).to_string())
    print(effect.table.attrs["note"])
    width = max(map(len, results))
    for name, (score_vc, score_ev) in results.items():
        b, lo_ev, hi_ev = roc_auc_ci(y_ev, score_ev)
        if score_vc is None:
            vc_text = f"{'VC AUC n/a':26s}"
        else:
            a, lo, hi = roc_auc_ci(y_vc, score_vc)
            vc_text = f"VC AUC {a:.3f} ({lo:.3f}-{hi:.3f})"
        print(f"{name:{width}s}: {vc_text}, EV AUC {b:.3f} ({lo_ev:.3f}-{hi_ev:.3f})")
    adapted_ev, pooled_ev = results[adapted_row][1], results[pooled_row][1]
    z, p = delong_test(y_ev, adapted_ev, pooled_ev)
    print(f"DeLong test on EV, adapted vs pooled estimates: z = {z:.2f}, p = {p:.3f}")
    z, p = delong_test(y_ev, adapted_ev, results[none][1])
    print(f"DeLong test on EV, adapted vs no harmonisation: z = {z:.2f}, p = {p:.3f}")
    for name, (count, share) in shares.items():
        print(f"EV features with a scanner effect (Kruskal-Wallis p<0.001 across "
              f"{scanner.nunique()} scanners), {name}: {count} of {raw.shape[1]} "
              f"({100 * share:.1f}%)")  # fmt: skip
    for name, offset in offsets.items():
        print(f"EV offset from the training reference (median over features of |EV mean - "
              f"training mean| in training SDs), {name}: {offset:.2f}")  # fmt: skip
    print(
        f"total {time.perf_counter() - start:.0f} s on {platform.processor() or platform.machine()}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="kept; default: a temp folder")
    parser.add_argument("--n-patients", type=int, default=320)
    parser.add_argument("--n-external", type=int, default=96)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_external_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(workdir.resolve(), args.n_patients, args.n_external, args.n_jobs, args.random_state)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
