"""The study's combined model as one scikit-learn Pipeline, from image files to a fused probability.

The builders are here; what callers need to know about a *fitted* model (each branch's scores, its
clinical columns, its decision thresholds, a copy caching elsewhere, the patients its ComBat step
harmonised with pooled estimates) is too, defined in :mod:`p53radiomics._fitted_model` and
:mod:`p53radiomics._thresholds`.
"""

import re
from types import MappingProxyType

from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ._fitted_model import (
    MODEL_NAMES,
    adapt_harmonisation,
    branch_scores,
    fitted_branch,
    fitted_clinical_columns,
    pooled_harmonisation,
    radiomics_extractor,
    use_cache,
)
from ._settings import STUDY_CV, STUDY_MARGIN_MM, STUDY_SPACING
from ._thresholds import decision_thresholds, fit_thresholds
from .deep import SkorchCNNFeaturizer
from .feature_selection import CorrelationFilter, LassoSelector
from .fusion import StackingFusion
from .harmonization import ComBatHarmonizer
from .io import DEFAULT_PHASES
from .preprocessing import LargestSliceCropper, N4Resampler
from .radiomics import RadiomicsExtractor

__all__ = [
    "DEEP_BRANCH_DEFAULTS",
    "MODEL_NAMES",
    "adapt_harmonisation",
    "branch_scores",
    "decision_thresholds",
    "fit_thresholds",
    "fitted_branch",
    "fitted_clinical_columns",
    "make_clinical_branch",
    "make_deep_branch",
    "make_paper_pipeline",
    "make_radiomics_branch",
    "pooled_harmonisation",
    "radiomics_extractor",
    "use_cache",
]

#: The deep branch's settings at the study's values: the defaults of :func:`make_deep_branch`,
#: of :func:`make_paper_pipeline` and of the study's ``"full"`` profile
#: (:class:`~p53radiomics.study.Profile`), defined here once.
DEEP_BRANCH_DEFAULTS = MappingProxyType(
    {
        "backbone": "resnet101",
        "mode": "ff",
        "weights": None,
        "n_components": 8,
        "crop_size": 256,
        "context_slices": 0,
        "max_epochs": 20,
        "batch_size": 32,
        "device": "auto",
    }
)
_DEEP = DEEP_BRANCH_DEFAULTS


def _logistic():
    return LogisticRegression(max_iter=1000)


def make_clinical_branch(clinical_columns, *, cv=STUDY_CV, random_state=None):
    """The clinical model: encoding, LASSO selection and logistic regression.

    Parameters
    ----------
    clinical_columns : list of str
        Candidate clinical columns of the cohort table (e.g. ``["age", "gender", "afp", "ltd",
        "rim_aphe"]``). Numeric columns are standardised; the others are one-hot encoded (a binary
        category becomes one 0/1 column; a category unseen in training is encoded as zeros).
    cv : int, default=5
        Folds of the LASSO's cross-validation.
    random_state : int or None, default=None
        Seeds the LASSO's folds.

    Returns
    -------
    branch : Pipeline
        Steps ``encode``, ``select``, ``classifier``; takes the cohort table.
    """
    columns = list(clinical_columns)
    if not columns:
        raise ValueError("clinical_columns must name at least one column")
    pattern = "^(?:" + "|".join(re.escape(c) for c in columns) + ")$"
    encode = ColumnTransformer(
        [
            (
                "numeric",
                StandardScaler(),
                make_column_selector(pattern=pattern, dtype_include="number"),
            ),
            (
                "categorical",
                OneHotEncoder(drop="if_binary", handle_unknown="ignore", sparse_output=False),
                make_column_selector(pattern=pattern, dtype_exclude="number"),
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline(
        [
            ("encode", encode),
            ("select", LassoSelector(cv=cv, random_state=random_state)),
            ("classifier", _logistic()),
        ]
    )


def make_radiomics_branch(
    phases=DEFAULT_PHASES,
    *,
    params=None,
    cache_dir=None,
    n_jobs=None,
    cv=STUDY_CV,
    random_state=None,
    harmonize=False,
    batch_column="scanner",
    robustness_threshold=None,
):
    """The radiomics model: PyRadiomics, z-score, Spearman filter at 0.9, LASSO, logistic regression.

    With ``harmonize=True``, ComBat removes each scanner's additive and multiplicative effect from
    the features before the z-score (:class:`~p53radiomics.ComBatHarmonizer`), with estimates
    learnt on the training data only: the study's radiomics model broke on scanner variability.

    Parameters
    ----------
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases to extract.
    params : dict, str or None, default=None
        PyRadiomics parameters (see :class:`RadiomicsExtractor`); ``None`` is the study's set.
    cache_dir : str or None, default=None
        Per-case cache of the extraction.
    n_jobs : int or None, default=None
        Cases extracted in parallel.
    cv : int, default=5
        Folds of the LASSO's cross-validation.
    random_state : int or None, default=None
        Seeds the LASSO's folds and the extractor's ROI perturbations.
    harmonize : bool, default=False
        Insert a ``harmonize`` step (:class:`~p53radiomics.ComBatHarmonizer`) after ``extract``,
        which then passes the `batch_column` through beside the features.
    batch_column : str, default="scanner"
        Cohort column naming each patient's scanner (used with ``harmonize=True``).
    robustness_threshold : float or None, default=None
        The extractor's robustness filter (:class:`RadiomicsExtractor`): keep the features whose
        ICC across the training patients' repeated ROIs (else perturbed ROIs) reaches it, e.g.
        0.75; ``None`` keeps every feature. Grid-searchable as ``extract__robustness_threshold``.

    Returns
    -------
    branch : Pipeline
        Steps ``extract``, ``scale``, ``decorrelate``, ``select``, ``classifier``; with
        ``harmonize=True``, ``extract``, ``harmonize``, ``scale``, ``decorrelate``, ``select``,
        ``classifier``.

    Examples
    --------
    >>> from p53radiomics.pipeline import make_radiomics_branch
    >>> branch = make_radiomics_branch(harmonize=True)
    >>> [name for name, _ in branch.steps]
    ['extract', 'harmonize', 'scale', 'decorrelate', 'select', 'classifier']
    >>> branch.get_params()["extract__passthrough"], branch.get_params()["harmonize__batch_column"]
    (('scanner',), 'scanner')
    """
    extract = RadiomicsExtractor(
        phases,
        params,
        cache_dir=cache_dir,
        n_jobs=n_jobs,
        passthrough=(batch_column,) if harmonize else (),
        robustness_threshold=robustness_threshold,
        random_state=random_state,
    )
    harmonizer = [("harmonize", ComBatHarmonizer(batch_column))] if harmonize else []
    return Pipeline(
        [
            ("extract", extract),
            *harmonizer,
            ("scale", StandardScaler()),
            ("decorrelate", CorrelationFilter(threshold=0.9, method="spearman")),
            ("select", LassoSelector(cv=cv, random_state=random_state)),
            ("classifier", _logistic()),
        ]
    )


def make_deep_branch(
    phases=DEFAULT_PHASES,
    *,
    backbone=_DEEP["backbone"],
    mode=_DEEP["mode"],
    weights=_DEEP["weights"],
    n_components=_DEEP["n_components"],
    crop_size=_DEEP["crop_size"],
    context_slices=_DEEP["context_slices"],
    max_epochs=_DEEP["max_epochs"],
    batch_size=_DEEP["batch_size"],
    device=_DEEP["device"],
    cv=STUDY_CV,
    random_state=None,
    verbose=0,
):
    """The deep-learning model: largest-slice crops, CNN features, LASSO, logistic regression.

    Parameters
    ----------
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases cropped (one CNN channel or branch each).
    backbone, mode, weights, n_components, max_epochs, batch_size, device
        Passed to :class:`SkorchCNNFeaturizer`.
    crop_size : int, default=256
        Side of the crops (:class:`LargestSliceCropper`'s ``size``).
    context_slices : int, default=0
        2.5D input: the slices above and below each phase's largest slice that are added as
        channels (:class:`LargestSliceCropper`'s ``context_slices``). The CNN is told the number of
        phases, so in FF mode each phase's branch takes its ``2 * context_slices + 1`` slices;
        ``crop__context_slices`` can be grid-searched alone.
    cv : int, default=5
        Folds of the LASSO's cross-validation.
    random_state : int or None, default=None
        Seeds the CNN and the LASSO's folds.
    verbose : int, default=0
        The CNN's progress.

    Returns
    -------
    branch : Pipeline
        Steps ``crop``, ``cnn``, ``scale``, ``select``, ``classifier``. The CNN's PCA features have
        unequal variances; ``scale`` standardises them so that the LASSO penalises them alike.
    """
    return Pipeline(
        [
            (
                "crop",
                LargestSliceCropper(
                    phases, margin=10, size=crop_size, context_slices=context_slices
                ),
            ),
            (
                "cnn",
                SkorchCNNFeaturizer(
                    backbone,
                    mode,
                    weights,
                    n_components,
                    n_phases=len(phases),
                    max_epochs=max_epochs,
                    batch_size=batch_size,
                    device=device,
                    random_state=random_state,
                    verbose=verbose,
                ),
            ),
            ("scale", StandardScaler()),
            ("select", LassoSelector(cv=cv, random_state=random_state)),
            ("classifier", _logistic()),
        ]
    )


def make_paper_pipeline(
    clinical_columns,
    backbone=_DEEP["backbone"],
    mode=_DEEP["mode"],
    phases=DEFAULT_PHASES,
    cache_dir=None,
    *,
    weights=_DEEP["weights"],
    n_components=_DEEP["n_components"],
    crop_size=_DEEP["crop_size"],
    max_epochs=_DEEP["max_epochs"],
    batch_size=_DEEP["batch_size"],
    device=_DEEP["device"],
    radiomics_params=None,
    spacing=STUDY_SPACING,
    margin_mm=STUDY_MARGIN_MM,
    cv=STUDY_CV,
    n_jobs=None,
    random_state=None,
    verbose=0,
    harmonize=False,
    batch_column="scanner",
    context_slices=_DEEP["context_slices"],
    robustness_threshold=None,
):
    """The study's combined model: preprocessing, then a stacking fusion of three models.

    ``Pipeline([("preprocess", N4Resampler), ("fusion", StackingFusion)])`` where the fusion's
    branches, each taking the preprocessed cohort table, are

    - ``clinical``: ``encode`` (standardise numeric, one-hot categorical columns), ``select``
      (:class:`LassoSelector`), ``classifier`` (logistic regression);
    - ``radiomics``: ``extract`` (:class:`RadiomicsExtractor`), ``scale``, ``decorrelate``
      (:class:`CorrelationFilter`, Spearman 0.9), ``select``, ``classifier``; with
      ``harmonize=True``, a ``harmonize`` step (:class:`ComBatHarmonizer`) after ``extract``;
    - ``deep``: ``crop`` (:class:`LargestSliceCropper`), ``cnn`` (:class:`SkorchCNNFeaturizer`),
      ``scale``, ``select``, ``classifier``;

    and a logistic regression fuses their out-of-fold probabilities. Every fitted part lives in
    the pipeline, so cross-validating it never leaks a validation fold into training; every
    setting is reachable by the usual ``__`` names, e.g. ``fusion__deep__cnn__backbone``.

    Parameters
    ----------
    clinical_columns : list of str
        Candidate clinical predictors (the study found LTD and rim-APHE).
    backbone : str, default="resnet101"
        CNN backbone (the study's best, in FF mode).
    mode : {"ff", "mc"}, default="ff"
        CNN fusion mode.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phases used by every step.
    cache_dir : str or None, default=None
        Per-case cache of preprocessing and extraction: with it, cross-validation and grid search
        compute each case once, and preprocessed volumes are passed between steps as cached files
        rather than held in memory. Strongly advised beyond a few dozen patients.
    weights, n_components, crop_size, max_epochs, batch_size, device, context_slices
        The deep branch's settings (see :func:`make_deep_branch`); ``context_slices=k`` gives the
        CNN 2.5D input, each phase's largest slice with the k slices above and below it.
    radiomics_params : dict, str or None, default=None
        PyRadiomics parameters; ``None`` is the study's set.
    spacing : tuple of float, default=(1.0, 1.0, 1.0)
        Resampled voxel spacing in mm.
    margin_mm : float or None, default=30.0
        Crop around the ROI before resampling (``None`` keeps the whole volume).
    cv : int, default=5
        Folds of the stacking and of the LASSO steps.
    n_jobs : int or None, default=None
        Cases preprocessed and extracted in parallel.
    random_state : int or None, default=None
        Seeds every random step.
    verbose : int, default=0
        Progress of the long steps.
    harmonize : bool, default=False
        ComBat harmonisation of the radiomics features across scanners, learnt on the training
        data (see :func:`make_radiomics_branch`).
    batch_column : str, default="scanner"
        Cohort column naming each patient's scanner (used with ``harmonize=True``).
    robustness_threshold : float or None, default=None
        The radiomics branch's robustness filter (see :func:`make_radiomics_branch`), fitted on
        each training fold only; grid-searchable as
        ``fusion__radiomics__extract__robustness_threshold`` (``None`` turns it off).

    Returns
    -------
    pipeline : Pipeline
        Unfitted; ``fit(X, y)`` on a cohort table, ``predict_proba(X)`` for the fused probability.

    Examples
    --------
    >>> from p53radiomics import make_paper_pipeline
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], backbone="resnet18", mode="mc")
    >>> [name for name, _ in model.steps]
    ['preprocess', 'fusion']
    >>> [name for name, _ in model.named_steps["fusion"].estimators]
    ['clinical', 'radiomics', 'deep']
    >>> model.get_params()["fusion__deep__cnn__backbone"]
    'resnet18'
    """
    preprocess = N4Resampler(
        phases,
        spacing=spacing,
        margin_mm=margin_mm,
        cache_dir=cache_dir,
        n_jobs=n_jobs,
        verbose=verbose,
    )
    branches = [
        ("clinical", make_clinical_branch(clinical_columns, cv=cv, random_state=random_state)),
        (
            "radiomics",
            make_radiomics_branch(
                phases,
                params=radiomics_params,
                cache_dir=cache_dir,
                n_jobs=n_jobs,
                cv=cv,
                random_state=random_state,
                harmonize=harmonize,
                batch_column=batch_column,
                robustness_threshold=robustness_threshold,
            ),
        ),
        (
            "deep",
            make_deep_branch(
                phases,
                backbone=backbone,
                mode=mode,
                weights=weights,
                n_components=n_components,
                crop_size=crop_size,
                context_slices=context_slices,
                max_epochs=max_epochs,
                batch_size=batch_size,
                device=device,
                cv=cv,
                random_state=random_state,
                verbose=verbose,
            ),
        ),
    ]
    return Pipeline([("preprocess", preprocess), ("fusion", StackingFusion(branches, cv=cv))])
