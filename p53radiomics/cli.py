"""The ``p53radiomics`` command line.

- ``p53radiomics demo --out DIR [--profile quick|full]``: the whole study on the synthetic cohort;
- ``p53radiomics fit --cohort cohort.csv --label COLUMN --out model.p53``;
- ``p53radiomics evaluate --model model.p53 --cohort external.csv --label COLUMN --out DIR``;
- ``p53radiomics predict --model model.p53 --cohort new.csv --out predictions.csv``;
- ``p53radiomics card model.p53``: the model card stored in the file.

A model file is written by :func:`~p53radiomics.save_model` (nothing in it runs when loaded)
unless ``--out`` ends in ``.joblib`` or ``.pkl``; ``--model`` reads both, a pickle with a warning.

Every command writes only where ``--out`` (and ``--cache-dir``) say. Heavy libraries are imported
inside the commands, so ``--help`` answers at once.
"""

import argparse
import sys
import time
from pathlib import Path


def _demo(args):
    from .study import check_external_arguments, run_study

    try:  # before any work: one line, exit code 2
        check_external_arguments(args.n_external, None, None, None)
    except ValueError as err:
        print(f"p53radiomics demo: error: --n-external: {err}", file=sys.stderr)
        return 2
    run_study(
        args.out,
        profile=args.profile,
        n_patients=args.n_patients,
        voxel_scale=args.voxel_scale,
        random_state=args.random_state,
        n_jobs=args.n_jobs,
        n_external=args.n_external,
    )
    return 0


def _phases(args):
    """--phases, or the study's phases (imported here: ``--help`` loads no image library)."""
    from .io import DEFAULT_PHASES

    return list(args.phases or DEFAULT_PHASES)


def _read(args):
    from .io import read_cohort_csv

    return read_cohort_csv(
        args.cohort,
        id_column=args.id_column,
        phases=_phases(args),
        label=getattr(args, "label", None),
    )


def _prepare(args, X, y, required_columns=()):
    """Check columns and labels at once, then stop at the first bad row or leave the bad ones out."""
    from .study import prepare_cohort

    X, y, skipped = prepare_cohort(
        X,
        y,
        _phases(args),
        required_columns=required_columns,
        on_error=args.on_error,
        pos_label=_positive(args, y),
        label_name=getattr(args, "label", None),
    )
    for pid, row in skipped.iterrows():
        print(
            f"skipped patient {pid!r}, column {row['column']!r}: {row['reason']}", file=sys.stderr
        )
    return X, y, skipped


def _positive(args, y):
    """--positive as one of the labels read: "1" names the class 1 of a numeric column."""
    positive = getattr(args, "positive", None)
    if positive is None or y is None:
        return positive
    for value in y.dropna().unique():
        if str(value) == positive:
            return value
    return positive  # not among the labels: prepare_cohort names the ones found


#: Suffixes of ``--out`` that ``fit`` writes as a joblib pickle (any other: a .p53 model file).
PICKLE_SUFFIXES = (".joblib", ".pkl")
PICKLE_WARNING = (
    "warning: {path} is a pickle (joblib): loading it runs code from the file; load only files "
    "you trust, and share models as .p53 files (p53radiomics fit --out model.p53)"
)


def _load(path):
    """``(model, card)`` from a model file: a zip archive through :func:`load_model` (with its
    card, or ``None``), anything else through joblib, after a one-line warning."""
    import zipfile

    from .model_card import CARD_KEY
    from .persistence import load_model, read_manifest

    if zipfile.is_zipfile(path):
        metadata = read_manifest(path)["metadata"]
        card = metadata.get(CARD_KEY) if isinstance(metadata, dict) else None
        return load_model(path), card
    import joblib

    print(PICKLE_WARNING.format(path=path), file=sys.stderr)
    return joblib.load(path), None


def _save(model, out, X, y, scores, thresholds, skipped, args):
    if out.suffix.lower() in PICKLE_SUFFIXES:
        import joblib

        joblib.dump(model, out)
        return
    from .model_card import CARD_KEY, missing_data_note, training_model_card
    from .persistence import save_model

    card = training_model_card(
        model, X, y, scores=scores, thresholds=thresholds,
        data_source=f"cohort table {Path(args.cohort).name} (label column {args.label!r})",
        missing_data=missing_data_note(skipped, args.on_error),
        settings={"profile": args.profile, "random_state": args.random_state},
    )  # fmt: skip
    save_model(model, out, metadata={CARD_KEY: card})


def _fit(args):
    from .pipeline import branch_scores, fit_thresholds
    from .study import PREOPERATIVE_COLUMNS, profile_pipeline

    start = time.perf_counter()
    X, y = _read(args)
    clinical = args.clinical_columns or [c for c in PREOPERATIVE_COLUMNS if c in X.columns]
    X, y, skipped = _prepare(args, X, y, required_columns=clinical)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or out.with_name(out.stem + "_cache")
    model = profile_pipeline(
        args.profile,
        clinical,
        phases=_phases(args),
        cache_dir=cache,
        n_jobs=args.n_jobs,
        random_state=args.random_state,
        backbone=args.backbone,
        mode=args.mode,
        harmonize=args.harmonize,
        context_slices=args.context_slices,
        robustness_threshold=args.robustness_threshold,
    )
    print(
        f"Fitting the combined model on {len(X)} patients ({int(y.sum())} positive), cache in {cache} ...",
        flush=True,
    )
    model.fit(X, y)
    scores = branch_scores(model, X)
    thresholds = fit_thresholds(model, X, y, scores=scores)  # chosen here, stored with the model
    _save(model, out, X, y, scores, thresholds, skipped, args)
    print(f"Wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _evaluate(args):
    from .study import evaluate_model

    X, y = _read(args)
    model, card = _load(args.model)
    results = evaluate_model(
        model,
        X,
        y,
        args.out,
        phases=_phases(args),
        on_error=args.on_error,
        pos_label=_positive(args, y),
        card=card,
        cache_dir=args.cache_dir,
    )
    columns = ["model", "cohort", "n", "accuracy", "auc_ci", "sensitivity", "specificity"]
    print(results["table5"][columns].round(3).to_string(index=False))
    if len(results["skipped"]):
        print(f"{len(results['skipped'])} patients skipped; listed in the report", file=sys.stderr)
    if len(results.get("harmonisation", ())):
        print(
            f"{len(results['harmonisation'])} patients are on scanners whose own effect the model "
            "could not learn (not in its training data, or one patient there): ComBat harmonised "
            "them with its pooled estimates; listed in the report",
            file=sys.stderr,
        )
    print(f"Wrote the external-validation report to {Path(args.out) / 'report.html'}")
    return 0


def _predict(args):
    import pandas as pd

    from .pipeline import branch_scores, decision_thresholds, fitted_clinical_columns, use_cache

    X = _read(args)
    model, _ = _load(args.model)
    X, _, _ = _prepare(args, X, None, required_columns=fitted_clinical_columns(model))
    model = use_cache(model, args.cache_dir)  # by default (None) nothing is cached anywhere
    scores = branch_scores(model, X)
    table = pd.DataFrame({f"p_{k}": v for k, v in scores.items()}, index=X.index)
    threshold = (decision_thresholds(model) or {}).get("combined", 0.5)
    table["prediction"] = (table["p_combined"] >= threshold).astype(int)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out)
    print(f"Wrote {len(table)} predictions to {out}")
    return 0


def _card(args):
    from .model_card import format_model_card, read_model_card

    print(format_model_card(read_model_card(args.model)), end="")
    return 0


def _add_cohort_arguments(parser, label=True):
    parser.add_argument(
        "--cohort",
        required=True,
        help="cohort CSV (id column, image/mask columns, clinical columns)",
    )
    if label:
        parser.add_argument(
            "--label",
            required=True,
            help="column of the CSV holding the binary label (1 = P53-mutated)",
        )
        parser.add_argument(
            "--positive",
            default=None,
            metavar="LABEL",
            help="the label of the P53-mutated class, needed where the labels are not 0/1 or "
            "true/false (e.g. --positive mutant)",
        )
    parser.add_argument(
        "--id-column",
        default=None,
        help="id column of the CSV (default: patient_id, id, ... or the first column)",
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        default=None,  # the study's phases, p53radiomics.io.DEFAULT_PHASES (see _phases)
        help="phase columns (default: the study's three, ap pvp dp)",
    )
    parser.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a bad row stops the run naming patient and column (raise), or is left out and listed (skip)",
    )


def _add_demo(commands):
    """The ``demo`` sub-command."""
    demo = commands.add_parser(
        "demo",
        help="run the whole study on the embedded synthetic cohort",
        description="Generate the synthetic three-phase DCE-MRI cohort, split it 7:3, and run the study: "
        "Tables 1-5, DeLong tests, nomogram, calibration and decision curves, Grad-CAM; the fitted model is also "
        "evaluated on a synthetic external site (EV) and the radiomics model without and with ComBat "
        "harmonisation (harmonisation_effect.csv). Writes report.html, "
        "the tables (CSV), the figures (PNG), the fitted combined model with its model card (model.p53; "
        "'p53radiomics card' prints the card), model_card.md and checklist.csv; the time, CPU time and "
        "peak memory of every stage end the console output and the report (also in settings.json and stages.csv). "
        "Outputs go only under --out.",
    )
    demo.add_argument(
        "--out", default="p53radiomics_demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument(
        "--profile",
        choices=["quick", "full", "smoke"],
        default="quick",
        help="quick: minutes on a 2-core CPU (one backbone, small crops, few epochs); "
        "full: the study's settings, for a GPU (default: %(default)s)",
    )
    demo.add_argument(
        "--n-patients",
        type=int,
        default=320,
        help="cohort size (default: the study's %(default)s); the stage table of a smaller run gives "
        "each stage's seconds per patient, to extrapolate",
    )
    demo.add_argument(
        "--n-external",
        type=int,
        default=None,
        help="patients of the synthetic external cohort (EV), on scanners absent from the development "
        "cohort, evaluated beside the TC and the VC (default: a fifth of --n-patients, at least 6; "
        "0: none; otherwise at least 6, 2 per external scanner)",
    )
    demo.add_argument("--random-state", type=int, default=0, help="seed (default: %(default)s)")
    demo.add_argument(
        "--voxel-scale",
        type=float,
        default=1.0,
        help="multiply the simulated scanners' voxel spacing (2 = 8x fewer voxels; default: %(default)s)",
    )
    demo.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="parallel workers, -1 = all cores (default: %(default)s)",
    )
    demo.set_defaults(func=_demo)


def _icc_threshold(text):
    """An ICC threshold from the command line: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"an ICC threshold lies in [0, 1]; got {text}")
    return value


def _add_fit(commands):
    """The ``fit`` sub-command."""
    fit = commands.add_parser(
        "fit",
        help="fit the combined model on your cohort",
        description="Fit the study's combined model (preprocessing; clinical, radiomics and CNN models; stacking) "
        "on a cohort CSV and save it, with its model card, as a .p53 file that loading never executes "
        "(p53radiomics.save_model). A per-case cache is kept beside the model (--cache-dir).",
    )
    _add_cohort_arguments(fit)
    fit.add_argument(
        "--out",
        required=True,
        help="where to write the fitted model: a .p53 model file (any suffix but .joblib and .pkl); "
        ".joblib or .pkl writes a joblib pickle as earlier versions did, which runs code when "
        "loaded and holds no model card",
    )
    fit.add_argument(
        "--clinical-columns",
        nargs="+",
        default=None,
        help="candidate clinical predictors (default: the preoperative ones present)",
    )
    fit.add_argument("--backbone", default=None, help="CNN backbone (default: the profile's)")
    fit.add_argument(
        "--mode",
        choices=["ff", "mc"],
        default=None,
        help="CNN fusion mode (default: the profile's)",
    )
    fit.add_argument(
        "--harmonize",
        action="store_true",
        help="ComBat harmonisation of the radiomics features across the 'scanner' column, "
        "learnt on this cohort and applied unchanged to the ones the model evaluates or predicts",
    )
    fit.add_argument(
        "--context-slices",
        type=int,
        default=0,
        metavar="K",
        help="2.5D CNN input: the K slices above and below each phase's largest slice (default: 0)",
    )
    fit.add_argument(
        "--robustness-threshold",
        type=_icc_threshold,
        default=None,
        metavar="T",
        help="keep the radiomics features whose ICC over the training patients' repeated ROIs "
        "(else perturbed ones) reaches T, e.g. 0.75 ('good', Koo & Li 2016); default: every feature",
    )
    fit.add_argument(
        "--profile",
        choices=["quick", "full", "smoke"],
        default="full",
        help="settings (default: %(default)s)",
    )
    fit.add_argument(
        "--cache-dir", default=None, help="per-case cache folder (default: beside --out)"
    )
    fit.add_argument(
        "--n-jobs", type=int, default=-1, help="parallel workers (default: %(default)s)"
    )
    fit.add_argument("--random-state", type=int, default=0, help="seed (default: %(default)s)")
    fit.set_defaults(func=_fit)


_MODEL_HELP = (
    "a model written by 'p53radiomics fit' or 'demo': a .p53 file (nothing in it runs), or a joblib "
    "pickle (loading it runs code from the file: a warning says so)"
)


def _add_card(commands):
    """The ``card`` sub-command."""
    card = commands.add_parser(
        "card",
        help="print the model card stored in a model file",
        description="Print the model card of a .p53 model file (written by 'fit' or 'demo'): intended "
        "use, training cohort, inputs, settings, performance with 95% CIs, calibration, the branches' "
        "contributions, limitations, versions. Nothing in the file runs.",
    )
    card.add_argument("model", help="a .p53 model file")
    card.set_defaults(func=_card)


def _add_evaluate(commands):
    """The ``evaluate`` sub-command."""
    evaluate = commands.add_parser(
        "evaluate",
        help="external validation of a fitted model",
        description="Evaluate a fitted model on another cohort: Table 5, DeLong tests, ROC, calibration and "
        "decision curves, at the thresholds chosen on the training cohort. Writes report.html under --out.",
    )
    evaluate.add_argument("--model", required=True, help=_MODEL_HELP)
    _add_cohort_arguments(evaluate)
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument(
        "--cache-dir",
        default=None,
        help="per-case cache folder, which several evaluations of one cohort can share "
        "(default: OUT/cache)",
    )
    evaluate.set_defaults(func=_evaluate)


def _add_predict(commands):
    """The ``predict`` sub-command."""
    predict = commands.add_parser(
        "predict",
        help="predict P53 mutation for new patients",
        description="Write each patient's fused probability, each model's probability and the call at the "
        "training threshold to a CSV.",
    )
    predict.add_argument("--model", required=True, help=_MODEL_HELP)
    _add_cohort_arguments(predict, label=False)
    predict.add_argument("--out", required=True, help="the predictions CSV to write")
    predict.add_argument(
        "--cache-dir",
        default=None,
        help="per-case cache folder, to reuse the preprocessing of cases seen before "
        "(default: none, nothing is written but the CSV)",
    )
    predict.set_defaults(func=_predict)


def build_parser():
    """The argument parser of the ``p53radiomics`` command (one sub-command per job)."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="p53radiomics",
        description="Predict P53 mutation in hepatocellular carcinoma from three-phase contrast MRI "
        "(clinical + radiomics + CNN models fused in one scikit-learn Pipeline).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for add in (_add_demo, _add_fit, _add_evaluate, _add_predict, _add_card):
        add(commands)
    return parser


def main(argv=None):
    """Entry point of the ``p53radiomics`` console script."""
    args = build_parser().parse_args(argv)
    from .exceptions import CohortError, ModelFileError

    try:
        return args.func(args)
    except ModelFileError as err:  # a refused model file: one line naming file and member
        print(f"p53radiomics {args.command}: error: {err}", file=sys.stderr)
        return 2
    except CohortError as err:  # a bad input: one line naming patient and column, exit code 2
        print(f"p53radiomics {args.command}: error: {err}", file=sys.stderr)
        if (
            getattr(args, "on_error", "raise") == "raise"
            and args.command != "demo"
            and err.patient_id is not None
        ):
            print("  (--on-error skip leaves such patients out and lists them)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
