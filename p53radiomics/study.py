"""The whole study as one job: split, Tables 1-5, DeLong tests, nomogram, calibration, decision
curves and Grad-CAM, written to a folder with a report a clinician can read.

Used by the command line (``p53radiomics demo``, ``fit``, ``evaluate``) and callable from Python
(:func:`run_study`, :func:`evaluate_model`). Every output goes under the folder it is given.
"""

import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from .exceptions import UnseenBatchWarning
from .io import DEFAULT_PHASES, CohortError, binary_labels, validate_cohort
from .pipeline import branch_scores
from .report import MODEL_NAMES, _gradcam_figures, _study_figures

__all__ = [
    "PROFILES",
    "Profile",
    "evaluate_model",
    "prepare_cohort",
    "profile_pipeline",
    "run_study",
    "skip_bad_cases",
    "use_cache",
]

#: Candidate predictors of the clinical model: what is known before surgery (grade and MVI are
#: pathological findings, in Table 2 but not in a preoperative model).
PREOPERATIVE_COLUMNS = (
    "age", "gender", "afp", "cea", "ca199", "ltd", "rim_aphe", "washout", "delayed_central_enhancement", "capsule",
)  # fmt: skip
#: Columns of the study's Tables 1 and 2.
TABLE_COLUMNS = (
    "age", "gender", "ca199", "afp", "cea", "edmondson_grade", "mvi", "ltd", "rim_aphe", "washout",
    "delayed_central_enhancement", "capsule",
)  # fmt: skip
#: The categories in which the study reports laboratory values.
LAB_BINS = {"afp": [20, 400], "cea": [5], "ca199": [37]}


@dataclass(frozen=True)
class Profile:
    """Settings of a run of the study.

    Attributes
    ----------
    name : str
        ``"quick"`` or ``"full"``.
    backbones : tuple of str
        CNN backbones compared (Tables 3 and 4).
    modes : tuple of str
        Fusion modes compared.
    final_backbone, final_mode : str
        The deep model of the combined model, fixed beforehand (the study's finding), not chosen on
        the validation cohort, which would leak it into the model.
    crop_size, max_epochs, batch_size, n_components : int
        CNN settings.
    spacing : tuple of float
        Resampled voxel spacing (mm).
    n_iterations : tuple of int
        N4 iterations per level.
    radiomics : str
        ``"study"`` (the 1,223-feature set per phase) or ``"original"`` (original image only).
    cv : int
        Folds of the stacking and of the LASSO steps.
    n_gradcam : int
        Validation patients shown in Grad-CAM panels.
    """

    name: str
    backbones: tuple
    modes: tuple = ("mc", "ff")
    final_backbone: str = "resnet101"
    final_mode: str = "ff"
    crop_size: int = 256
    max_epochs: int = 20
    batch_size: int = 32
    n_components: int = 8
    spacing: tuple = (1.0, 1.0, 1.0)
    n_iterations: tuple = (50, 50, 50, 50)
    radiomics: str = "study"
    cv: int = 5
    n_gradcam: int = 4
    notes: tuple = field(default=())


PROFILES = {
    "quick": Profile(
        "quick",
        backbones=("resnet18",),
        final_backbone="resnet18",
        crop_size=48,
        max_epochs=3,
        batch_size=32,
        spacing=(2.0, 2.0, 2.0),
        n_iterations=(20, 20),
        radiomics="original",
        cv=3,
        n_gradcam=3,
        notes=(
            "one backbone (ResNet18) instead of six, in both fusion modes",
            "48-pixel crops instead of 256, 3 epochs, no pretrained weights",
            "2-mm resampling instead of 1 mm; N4 with 2 fitting levels of 20 iterations instead of 4 of 50",
            "radiomics on the original image only (about 107 features per phase instead of 1,223)",
            "3-fold stacking and LASSO instead of 5",
        ),
    ),
    "smoke": Profile(
        "smoke",
        backbones=("resnet18",),
        final_backbone="resnet18",
        crop_size=32,
        max_epochs=1,
        batch_size=16,
        n_components=2,
        spacing=(2.0, 2.0, 2.0),
        n_iterations=(5, 5),
        radiomics="original",
        cv=2,
        n_gradcam=1,
        notes=("a smoke test of the command line, in seconds: its figures mean nothing",),
    ),
    "full": Profile(
        "full",
        backbones=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121"),
        notes=(
            "the study's settings: six backbones, 256-pixel crops, 1-mm voxels, the full radiomics set",
        ),
    ),
}


def _radiomics_params(profile):
    if profile.radiomics == "study":
        return None
    from .radiomics import load_params

    params = load_params(None)
    params["imageType"] = {"Original": {}}
    return params


def profile_pipeline(
    profile,
    clinical_columns,
    *,
    phases=DEFAULT_PHASES,
    cache_dir=None,
    n_jobs=None,
    random_state=0,
    backbone=None,
    mode=None,
    harmonize=False,
    context_slices=0,
):
    """The study's pipeline (:func:`~p53radiomics.make_paper_pipeline`) with a profile's settings.

    Parameters
    ----------
    profile : {"quick", "full", "smoke"} or Profile
        Settings (:data:`PROFILES`).
    clinical_columns : list of str
        Candidate clinical predictors.
    phases : sequence of str
        Phases used.
    cache_dir : str, os.PathLike or None
        Per-case cache; stored absolute, since the fitted model remembers it.
    n_jobs : int or None
        Cases preprocessed and extracted in parallel.
    random_state : int
        Seeds every model.
    backbone, mode : str or None
        The CNN; ``None`` takes the profile's final model.
    harmonize : bool
        ComBat harmonisation across the ``scanner`` column in the radiomics branch.
    context_slices : int
        2.5D crops for the CNN: the slices above and below each phase's largest slice.

    Returns
    -------
    pipeline : Pipeline
        Unfitted.
    """
    from .pipeline import make_paper_pipeline

    profile = PROFILES[profile] if isinstance(profile, str) else profile
    model = make_paper_pipeline(
        list(clinical_columns),
        backbone=backbone or profile.final_backbone,
        mode=mode or profile.final_mode,
        phases=phases,
        cache_dir=None if cache_dir is None else str(Path(cache_dir).resolve()),
        n_components=profile.n_components,
        crop_size=profile.crop_size,
        max_epochs=profile.max_epochs,
        batch_size=profile.batch_size,
        radiomics_params=_radiomics_params(profile),
        spacing=profile.spacing,
        cv=profile.cv,
        n_jobs=n_jobs,
        random_state=random_state,
        verbose=1,
        harmonize=harmonize,
        context_slices=context_slices,
    )
    return model.set_params(preprocess__n_iterations=profile.n_iterations)


def _log(message, start):
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


def _label_name(y, label_name):
    if label_name is not None:
        return label_name
    return y.name if isinstance(y, pd.Series) and y.name is not None else "y"


def _check_then_skip(X, y, phases, required_columns, label_name):
    """The shared core of :func:`skip_bad_cases` and :func:`prepare_cohort` (``on_error="skip"``).

    Table-level problems (a phase or required column missing, repeated ids) raise; then the rows
    without a label, then the rows whose required cells or files fail, are left out and listed.
    Labels and columns are checked before any file is opened.
    """
    validate_cohort(X, phases, check_images=False)  # phases, ids
    # a 0-row copy checks that the required columns exist without failing on one row's NaN
    validate_cohort(X.iloc[:0], phases, required_columns=required_columns, check_images=False)
    problems = []
    if y is not None:
        if isinstance(y, pd.Series):
            y = y.reindex(X.index) if not y.index.equals(X.index) else y
        else:
            y = pd.Series(np.asarray(y).ravel(), index=X.index)
        name = _label_name(y, label_name)
        problems += [(pid, name, "label is missing") for pid in X.index[y.isna().to_numpy()]]
    todo = X.index.difference([p for p, _, _ in problems], sort=False)
    for pid in todo:  # cheap cell checks for every row first, then the files
        try:
            validate_cohort(
                X.loc[[pid]], phases, required_columns=required_columns, check_images=False
            )
        except CohortError as err:
            problems.append((pid, err.column, err.reason))
    todo = todo.difference([p for p, _, _ in problems], sort=False)
    for pid in todo:
        try:
            # whole images: a NaN or constant one is left out here, not refused by a step later
            validate_cohort(X.loc[[pid]], phases, check_voxels=True)
        except CohortError as err:
            problems.append((pid, err.column, err.reason))
    skipped = pd.DataFrame(problems, columns=["patient_id", "column", "reason"]).set_index(
        "patient_id"
    )
    keep = ~X.index.isin(skipped.index)
    return X[keep], (y[keep] if y is not None else None), skipped


def skip_bad_cases(X, y=None, phases=DEFAULT_PHASES, required_columns=()):
    """Validate each patient on its own and leave out the ones with a problem.

    Table-level problems (a phase or required column absent, repeated patient ids) raise; a
    missing label, a missing value in a required column, or a bad file leaves the patient out.
    Labels and clinical values are checked before any image file is opened.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    y : pandas.Series, default=None
        Labels, filtered alike; a patient without a label is left out.
    phases : sequence of str
        Phases to check.
    required_columns : sequence of str
        Clinical columns that must hold a value.

    Returns
    -------
    X, y : the rows without problems (``y`` is ``None`` if not given, else as given, filtered)
    skipped : pandas.DataFrame
        Index: patient id; columns ``column`` and ``reason``.

    See Also
    --------
    prepare_cohort : the same, and labels checked as binary with a named positive class.
    """
    return _check_then_skip(X, y, phases, required_columns, None)


def prepare_cohort(
    X,
    y=None,
    phases=DEFAULT_PHASES,
    *,
    required_columns=(),
    on_error="raise",
    pos_label=None,
    label_name=None,
):
    """Check a cohort table and its labels before any work, then validate or skip each patient.

    The one preparation used by the command line and the study job. Columns and labels are
    checked before any image file is opened, so that a wrong column or label stops a run at once
    rather than after the preprocessing.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    y : array-like of shape (n_patients,), default=None
        Labels. 0/1 and booleans are taken as they are (1 or ``True`` = P53-mutated); any other
        pair of labels (e.g. ``"mutant"``/``"wild-type"``) needs `pos_label`.
    phases : sequence of str
        Phases to check.
    required_columns : sequence of str, default=()
        Clinical columns that must exist and hold a value for every patient.
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"`` stops at the first problem (:class:`~p53radiomics.exceptions.CohortError`
        naming patient and column); ``"skip"`` leaves out the patients with a problem (a missing
        label included) and lists them. Table-level problems raise either way.
    pos_label : object, default=None
        The label of the P53-mutated class, where the labels are not 0/1 or booleans.
    label_name : str, default=None
        The label's column name in error messages (default: ``y.name``, else ``"y"``).

    Returns
    -------
    X : pandas.DataFrame
        The patients kept.
    y : numpy.ndarray of int or None
        Their labels as 0/1, 1 = `pos_label` (``None`` if `y` was not given).
    skipped : pandas.DataFrame
        Index: patient id; columns ``column`` and ``reason`` (empty with ``on_error="raise"``).

    Raises
    ------
    CohortError
        With ``on_error="raise"``, on the first problem; in both modes, on a table-level one
        (e.g. labels that are not 0/1 given without `pos_label`, naming the classes found).

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> from p53radiomics.study import prepare_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=4, voxel_scale=3.0)
    >>> words = y.map({1: "mutant", 0: "wild-type"})
    >>> _, labels, _ = prepare_cohort(X, words, required_columns=["ltd"], pos_label="mutant")
    >>> bool((labels == y.to_numpy()).all())
    True
    >>> prepare_cohort(X, words, required_columns=["ltd"])
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: column 'p53': labels 'mutant', 'wild-type' are not 0/1 or booleans: say which one is P53-mutated (pos_label=..., or --positive on the command line)
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    name = None if y is None else _label_name(y, label_name)
    skipped = pd.DataFrame(columns=["column", "reason"])
    if on_error == "skip":
        X, y, skipped = _check_then_skip(X, y, phases, required_columns, name)
    if y is not None:
        y = binary_labels(
            y, X.index if isinstance(y, pd.Series) else None, pos_label=pos_label, column=name
        )
    if on_error == "raise":
        validate_cohort(X, phases, required_columns=required_columns)
    return X, y, skipped


def _table1(X_tc, y_tc, X_vc, y_vc):
    from .metrics import cohort_summary

    columns = [c for c in TABLE_COLUMNS if c in X_tc.columns]
    names = ("P53-", "P53+")
    tc = cohort_summary(X_tc, y_tc, columns, bins=LAB_BINS, group_names=names)
    vc = cohort_summary(X_vc, y_vc, columns, bins=LAB_BINS, group_names=names)
    both = pd.concat([X_tc, X_vc])
    split = pd.Series(np.r_[np.zeros(len(X_tc), int), np.ones(len(X_vc), int)], index=both.index)
    between = cohort_summary(both, split, columns, bins=LAB_BINS, group_names=("TC", "VC"))
    keep = lambda t: t.drop(columns=["p_value", "test"])  # noqa: E731
    return pd.concat(
        {"TC": keep(tc), "VC": keep(vc), "TC vs VC": between[["P value"]]}, axis=1
    ).fillna("")


def _table2_frame(X):
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


def _scores(model, X):
    return model.predict_proba(X)[:, 1]


def _pooled_harmonisation(fitted_pipeline, X):
    """Patients of X whose scanner the radiomics branch's ComBat step (if any) harmonised with its
    pooled estimates, with the reason; ``None`` for a model without that step."""
    radiomics = fitted_pipeline.named_steps["fusion"].named_estimators_.get("radiomics")
    harmonizer = getattr(radiomics, "named_steps", {}).get("harmonize")
    if harmonizer is None:
        return None
    scanner = X[harmonizer.batch_column]
    pooled = ~scanner.isin(harmonizer.batches_)
    alone = scanner.isin(harmonizer.pooled_batches_)
    reason = np.where(
        alone, "a single training patient on this scanner", "scanner not in the training data"
    )
    return pd.DataFrame({harmonizer.batch_column: scanner, "reason": reason})[pooled]


def _delong_table(y, scores, cohort):
    from .metrics import delong_test

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


def _deep_comparison(profile, crops, y_tc, y_vc, tc, vc, phases, random_state, start):
    """Tables 3 and 4: each backbone in each mode, trained on the TC crops (``crops``: DataFrame of
    per-patient crop arrays)."""
    from sklearn.pipeline import Pipeline

    from .metrics import diagnostic_table
    from .pipeline import make_deep_branch

    def stack(ids):
        return np.stack(crops.loc[ids, "crop"].to_list()).astype(np.float32)

    tables = {}
    for mode in profile.modes:
        results = {}
        for backbone in profile.backbones:
            branch = make_deep_branch(
                phases,
                backbone=backbone,
                mode=mode,
                n_components=profile.n_components,
                crop_size=profile.crop_size,
                max_epochs=profile.max_epochs,
                batch_size=profile.batch_size,
                cv=profile.cv,
                random_state=random_state,
            )
            model = Pipeline(branch.steps[1:])  # the crops are computed once for every model
            t = time.perf_counter()
            model.fit(stack(tc), y_tc)
            results[f"{mode.upper()}_{backbone}"] = {
                "TC": (y_tc, _scores(model, stack(tc))),
                "VC": (y_vc, _scores(model, stack(vc))),
            }
            _log(f"  {mode.upper()} {backbone}: trained in {time.perf_counter() - t:.1f} s", start)
        tables[mode] = diagnostic_table(results, reference_cohort="TC")
    return tables


def run_study(
    out,
    X=None,
    y=None,
    *,
    profile="quick",
    n_patients=320,
    voxel_scale=1.0,
    random_state=0,
    n_jobs=-1,
    test_size=0.3,
    phases=DEFAULT_PHASES,
    clinical_columns=PREOPERATIVE_COLUMNS,
    on_error="raise",
    pos_label=None,
):
    """Run the study end to end and write its tables, figures, model and report under `out`.

    Without `X`, a synthetic cohort of `n_patients` is generated into ``out/cohort``. The cohort is
    split 7:3 (stratified) into a training (TC) and a validation cohort (VC); then Table 1
    (characteristics by class in each cohort), Table 2 (univariable and multivariable odds ratios
    in the TC), the CNN comparison over backbones in MC and FF modes (Tables 3 and 4), the
    clinical, radiomics, DL and combined models (Table 5) with DeLong tests, the nomogram,
    calibration and decision curves, and Grad-CAM panels.

    Parameters
    ----------
    out : str or os.PathLike
        Output folder: ``report.html``, ``table*.csv``, ``*.png``, ``model.joblib``, ``cache/``.
    X, y : pandas.DataFrame and pandas.Series, default=None
        A cohort table and its labels; ``None`` generates the synthetic cohort.
    profile : {"quick", "full"} or Profile, default="quick"
        Settings (:data:`PROFILES`): ``"quick"`` fits a 2-core CPU in minutes, ``"full"`` is the
        study's (for a GPU).
    n_patients : int, default=320
        Size of the synthetic cohort.
    voxel_scale : float, default=1.0
        The synthetic cohort's `voxel_scale` (see :func:`~p53radiomics.datasets.make_synthetic_cohort`).
    random_state : int, default=0
        Seeds the cohort, the split and every model.
    n_jobs : int, default=-1
        Cases preprocessed and extracted in parallel.
    test_size : float, default=0.3
        Fraction of the validation cohort.
    phases : sequence of str
        Phases used.
    clinical_columns : sequence of str
        Candidate predictors of the clinical model (present columns only).
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves out patients with a bad file or value and lists them in the report.
    pos_label : object, default=None
        The label of the P53-mutated class, where `y` is not 0/1 or booleans (see
        :func:`prepare_cohort`).

    Returns
    -------
    results : dict
        The tables (DataFrames) by name, the fitted combined model under ``"model"`` and the
        timings.
    """
    from sklearn.model_selection import train_test_split

    from .metrics import diagnostic_table, logistic_odds_ratios
    from .preprocessing import LargestSliceCropper
    from .report import write_report

    start = time.perf_counter()
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(
        out
    ).resolve()  # the model stores its cache folder: never relative to a working directory
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    if X is None:
        from .datasets import make_synthetic_cohort

        _log(f"generating a synthetic cohort of {n_patients} patients", start)
        X, y = make_synthetic_cohort(
            out / "cohort",
            n_patients=n_patients,
            random_state=random_state,
            voxel_scale=voxel_scale,
            n_jobs=n_jobs,
        )
        timings["cohort"] = time.perf_counter() - start
    X, y, skipped = prepare_cohort(X, y, phases, on_error=on_error, pos_label=pos_label)
    if len(skipped):
        _log(f"skipped {len(skipped)} patients: " + ", ".join(map(str, skipped.index)), start)
    y = pd.Series(y, index=X.index)
    clinical = [c for c in clinical_columns if c in X.columns]

    tc, vc = train_test_split(X.index, test_size=test_size, stratify=y, random_state=random_state)
    X_tc, X_vc, y_tc, y_vc = X.loc[tc], X.loc[vc], y.loc[tc].to_numpy(), y.loc[vc].to_numpy()
    _log(f"split: {len(tc)} training (TC), {len(vc)} validation (VC) patients", start)

    tables = {"table1": _table1(X_tc, y_tc, X_vc, y_vc)}
    t2 = _table2_frame(X_tc)
    tables["table2"] = logistic_odds_ratios(t2, y_tc)

    model = profile_pipeline(
        profile,
        clinical,
        phases=phases,
        cache_dir=out / "cache",
        n_jobs=n_jobs,
        random_state=random_state,
    )

    t = time.perf_counter()
    _log("preprocessing every case (N4, crop, resampling, normalisation; cached)", start)
    Xp = model.named_steps["preprocess"].transform(X)
    timings["preprocessing"] = time.perf_counter() - t
    t = time.perf_counter()
    _log("extracting radiomics features (cached)", start)
    model.named_steps["fusion"].estimators[1][1].named_steps["extract"].transform(Xp)
    timings["radiomics"] = time.perf_counter() - t

    _log(
        f"comparing CNNs: {', '.join(profile.backbones)} in {', '.join(m.upper() for m in profile.modes)} modes",
        start,
    )
    t = time.perf_counter()
    crops = LargestSliceCropper(phases, margin=10, size=profile.crop_size).transform(Xp)
    crops = pd.DataFrame({"crop": list(crops)}, index=X.index)
    comparison = _deep_comparison(profile, crops, y_tc, y_vc, tc, vc, phases, random_state, start)
    tables["table3"] = comparison.get("mc")
    tables["table4"] = comparison.get("ff")
    timings["cnn_comparison"] = time.perf_counter() - t

    _log("fitting the combined model on the TC (out-of-fold stacking of the three models)", start)
    t = time.perf_counter()
    model.fit(X_tc, y_tc)
    timings["combined_model"] = time.perf_counter() - t
    scores_tc = branch_scores(model, X_tc)
    scores_vc, Xp_vc = branch_scores(model, X_vc, return_preprocessed=True)
    results = {
        MODEL_NAMES[k]: {"TC": (y_tc, scores_tc[k]), "VC": (y_vc, scores_vc[k])}
        for k in MODEL_NAMES
    }
    tables["table5"] = diagnostic_table(results, reference_cohort="TC")
    # the Youden thresholds chosen on the TC travel with the model, for external validation
    model.p53radiomics_thresholds_ = dict(
        zip(tables["table5"]["model"], tables["table5"]["threshold"], strict=False)
    )
    tables["delong"] = pd.DataFrame(
        _delong_table(y_tc, scores_tc, "TC") + _delong_table(y_vc, scores_vc, "VC")
    )

    _log("drawing figures", start)
    fusion = model.named_steps["fusion"]
    scores_frame = pd.DataFrame({k: scores_tc[k] for k in ("clinical", "radiomics", "deep")})
    figures = _study_figures(
        out,
        {"TC": y_tc, "VC": y_vc},
        {"TC": scores_tc, "VC": scores_vc},
        fusion,
        scores_frame,
        random_state,
    )
    gradcam_ids = list(vc[: profile.n_gradcam])
    figures.update(_gradcam_figures(out, model, Xp_vc, gradcam_ids, phases))

    for name, table in tables.items():
        if table is not None:
            table.to_csv(out / f"{name}.csv")
    joblib.dump(model, out / "model.joblib")
    timings["total"] = time.perf_counter() - start
    settings = {
        "profile": profile.name,
        **{k: v for k, v in asdict(profile).items() if k not in ("name", "notes")},
    }
    settings.update(n_patients=len(X), random_state=random_state, clinical_columns=clinical)
    (out / "settings.json").write_text(
        json.dumps(settings, indent=2, default=str), encoding="utf-8"
    )
    write_report(
        out / "report.html",
        title="P53 mutation in HCC from three-phase DCE-MRI: the study on "
        + ("the synthetic cohort" if (out / "cohort").exists() else "your cohort"),
        tables=tables,
        figures=figures,
        profile=profile,
        settings=settings,
        skipped=skipped,
        timings=timings,
    )
    _print_summary(tables)
    _log(f"done: report in {out / 'report.html'}", start)
    return {**tables, "model": model, "timings": timings, "skipped": skipped}


def _print_summary(tables):
    with pd.option_context(
        "display.width", 200, "display.max_rows", 200, "display.max_colwidth", 40
    ):
        print("\nTable 1. Characteristics by P53 status")
        print(tables["table1"].to_string())
        print("\nTable 2. Odds ratios (training cohort)")
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


def evaluate_model(
    model, X, y, out, *, phases=DEFAULT_PHASES, on_error="raise", random_state=0, pos_label=None
):
    """External validation of a fitted combined model: Table 5, DeLong tests, figures, report.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`~p53radiomics.make_paper_pipeline` model (e.g. ``joblib.load``-ed).
    X, y : pandas.DataFrame and pandas.Series
        The external cohort and its labels.
    out : str or os.PathLike
        Output folder.
    phases : sequence of str
        Phases of the model.
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` leaves out patients with a bad file or value and lists them in the report.
    random_state : int, default=0
        Seeds the bootstrap bands of the ROC figure.
    pos_label : object, default=None
        The label of the P53-mutated class, where `y` is not 0/1 or booleans (see
        :func:`prepare_cohort`).

    Returns
    -------
    results : dict
        ``table5``, ``delong``, ``skipped``; and ``harmonisation``, the patients whose scanner
        the model's ComBat step (``harmonize=True``) harmonised with its pooled estimates, where
        there are any.
    """
    from .metrics import diagnostic_table
    from .report import write_report

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from .pipeline import fitted_clinical_columns

    X, y, skipped = prepare_cohort(
        X,
        y,
        phases,
        required_columns=fitted_clinical_columns(model),
        on_error=on_error,
        pos_label=pos_label,
    )
    model = use_cache(model, out / "cache")
    with warnings.catch_warnings():
        # the patients harmonised with pooled estimates are listed in the report instead
        warnings.simplefilter("ignore", UnseenBatchWarning)
        scores = branch_scores(model, X)
    # the decision thresholds are the ones stored with the model, chosen on its training cohort
    thresholds = getattr(model, "p53radiomics_thresholds_", None) or "youden"
    results = {MODEL_NAMES[k]: {"External": (y, scores[k])} for k in MODEL_NAMES}
    tables = {
        "table5": diagnostic_table(results, threshold=thresholds),
        "delong": pd.DataFrame(_delong_table(y, scores, "External")),
    }
    pooled = _pooled_harmonisation(model, X)
    if pooled is not None and len(pooled):
        tables["harmonisation"] = pooled
    figures = _study_figures(out, {"External": y}, {"External": scores}, None, None, random_state)
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv")
    write_report(
        out / "report.html",
        title="External validation of a fitted P53 model",
        tables=tables,
        figures=figures,
        profile=None,
        settings={"n_patients": len(X)},
        skipped=skipped,
        timings={},
    )
    return {**tables, "skipped": skipped}


def use_cache(model, cache_dir):
    """A copy of a fitted study model whose per-case caches live in `cache_dir`.

    A model remembers the cache folder it was fitted with; where it is used elsewhere (another
    machine, another output folder), its cached files must go where the user asked for outputs.
    The network and every fitted part are shared with `model`, not copied.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`profile_pipeline` or :func:`~p53radiomics.make_paper_pipeline` model.
    cache_dir : str, os.PathLike or None
        The new cache folder of the preprocessing and radiomics steps; ``None`` caches nothing.

    Returns
    -------
    model : Pipeline
        The copy; `model` itself is unchanged.
    """
    import copy

    model = copy.copy(model)
    model.steps = list(model.steps)
    preprocess = copy.copy(model.named_steps["preprocess"])
    preprocess.cache_dir = None if cache_dir is None else str(cache_dir)
    model.steps[0] = ("preprocess", preprocess)
    fusion = copy.copy(model.named_steps["fusion"])
    radiomics = copy.copy(fusion.named_estimators_["radiomics"])
    radiomics.steps = list(radiomics.steps)
    extract = copy.copy(radiomics.named_steps["extract"])
    extract.cache_dir = None if cache_dir is None else str(cache_dir)
    radiomics.steps[0] = ("extract", extract)
    fusion.estimators_ = [
        radiomics if est is fusion.named_estimators_["radiomics"] else est
        for est in fusion.estimators_
    ]
    fusion.named_estimators_ = type(fusion.named_estimators_)(
        **{**fusion.named_estimators_, "radiomics": radiomics}
    )
    model.steps[1] = ("fusion", fusion)
    return model


def with_profile(profile, **changes):
    """A copy of a named profile with some settings changed (e.g. for tests)."""
    return replace(PROFILES[profile] if isinstance(profile, str) else profile, **changes)
