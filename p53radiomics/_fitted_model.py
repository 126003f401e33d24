"""What the study, the report and the command line need to know about a fitted combined model.

The shape of a :func:`~p53radiomics.make_paper_pipeline` model (``preprocess``, then ``fusion``
with the branches ``clinical``, ``radiomics`` and ``deep``) is walked here and nowhere else: each
branch's scores, the clinical columns it reads, the patients its ComBat step harmonised with
pooled estimates, a copy caching elsewhere, an unfitted copy of its radiomics step (its decision
thresholds are in :mod:`p53radiomics._thresholds`). Re-exported by :mod:`p53radiomics.pipeline`.
"""

import copy

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "MODEL_NAMES",
    "adapt_harmonisation",
    "branch_scores",
    "fitted_branch",
    "fitted_clinical_columns",
    "pooled_harmonisation",
    "radiomics_extractor",
    "use_cache",
]

#: Display names of the study's models, by branch (and ``"combined"``, the fused model).
MODEL_NAMES = {
    "clinical": "Clinical model",
    "radiomics": "Radiomics model",
    "deep": "DL model",
    "combined": "Combined model",
}


def fitted_branch(model, name):
    """One fitted branch of a fitted combined model.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`~p53radiomics.make_paper_pipeline` model.
    name : {"clinical", "radiomics", "deep"}
        The branch.

    Returns
    -------
    branch : Pipeline or "drop"
        The fitted branch (``"drop"`` for a branch set to ``"drop"``).

    Raises
    ------
    KeyError
        If the model has no branch of that name.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> from p53radiomics.pipeline import fitted_branch
    >>> [name for name, _ in fitted_branch(model, "clinical").steps]
    ['encode', 'select', 'classifier']
    >>> fitted_branch(model, "deep")
    'drop'
    """
    fusion = model.named_steps["fusion"]
    check_is_fitted(fusion)
    if name not in fusion.named_estimators_:
        raise KeyError(
            f"the model has no branch {name!r}; its branches: {list(fusion.named_estimators_)}"
        )
    return fusion.named_estimators_[name]


def radiomics_extractor(model):
    """An unfitted copy of a combined model's radiomics extraction step, with its settings.

    Its ``transform`` reads and fills the model's radiomics cache (the same settings, the same
    keys) and leaves `model` as it was, with no per-case record (``diagnostics_``) of another
    cohort: the study fills the cache this way for every patient before fitting.

    Parameters
    ----------
    model : Pipeline
        A :func:`~p53radiomics.make_paper_pipeline` model, fitted (the copy takes the fitted
        step's settings) or not.

    Returns
    -------
    extract : RadiomicsExtractor
        The copy, unfitted.

    Raises
    ------
    ValueError
        If the model's radiomics branch is ``"drop"``.

    Examples
    --------
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.pipeline import radiomics_extractor
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], cache_dir="features")
    >>> extract = radiomics_extractor(model)
    >>> type(extract).__name__, extract.cache_dir
    ('RadiomicsExtractor', 'features')
    >>> extract is model.get_params()["fusion__radiomics__extract"]
    False
    """
    fusion = model.named_steps["fusion"]
    fitted = hasattr(fusion, "named_estimators_")
    branch = fitted_branch(model, "radiomics") if fitted else dict(fusion.estimators)["radiomics"]
    if isinstance(branch, str):
        raise ValueError("the model's radiomics branch is 'drop': it extracts no radiomics")
    return clone(branch.named_steps["extract"])


def fitted_clinical_columns(model):
    """The cohort-table columns a fitted model's clinical branch reads.

    A cohort given to the fitted model must hold each of them, with a value for every patient;
    checking them first (:func:`~p53radiomics.study.prepare_cohort`) stops a run before any
    image work rather than after it.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`make_paper_pipeline` model, or a fitted :func:`make_clinical_branch`.

    Returns
    -------
    columns : list of str
        In the order the branch's encoder took them.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.pipeline import fitted_clinical_columns, make_clinical_branch
    >>> X = pd.DataFrame({"ltd": [30.0, 52, 41, 66, 28, 47], "rim_aphe": ["no", "yes"] * 3})
    >>> branch = make_clinical_branch(["ltd", "rim_aphe"], cv=2).fit(X, [0, 1, 0, 1, 0, 1])
    >>> fitted_clinical_columns(branch)
    ['ltd', 'rim_aphe']
    """
    if "fusion" in getattr(model, "named_steps", {}):
        model = fitted_branch(model, "clinical")
    encode = model.named_steps["encode"]
    check_is_fitted(encode)
    return [
        column
        for name, _, columns in encode.transformers_
        if name != "remainder"
        for column in columns
    ]


def branch_scores(model, X, *, return_preprocessed=False):
    """Each branch's probability of P53 mutation and the combined one, for a cohort table.

    The cohort is preprocessed once and every branch scores the same preprocessed table.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`make_paper_pipeline` model.
    X : pandas.DataFrame
        Cohort table.
    return_preprocessed : bool, default=False
        Also return the preprocessed table (the ``preprocess`` step's output).

    Returns
    -------
    scores : dict of str to numpy.ndarray
        ``predict_proba(X)[:, 1]`` of each branch kept (``"clinical"``, ``"radiomics"``,
        ``"deep"``; a branch set to ``"drop"`` is left out) and ``"combined"``, the fused one.
    preprocessed : pandas.DataFrame
        Only with ``return_preprocessed=True``.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> from p53radiomics.pipeline import branch_scores
    >>> scores = branch_scores(model, X)
    >>> sorted(scores), scores["combined"].shape
    (['clinical', 'combined'], (12,))
    """
    preprocess, fusion = model.named_steps["preprocess"], model.named_steps["fusion"]
    check_is_fitted(fusion)
    Xp = preprocess.transform(X)
    scores = {
        name: est.predict_proba(Xp)[:, 1]
        for name, est in fusion.named_estimators_.items()
        if est != "drop"
    }
    scores["combined"] = fusion.predict_proba(Xp)[:, 1]
    return (scores, Xp) if return_preprocessed else scores


def pooled_harmonisation(model, X):
    """The patients whose scanner the radiomics branch's ComBat step harmonised with pooled estimates.

    A scanner unseen in training, or with a single training patient, has no estimate of its own:
    :class:`~p53radiomics.ComBatHarmonizer` applies the training scanners' pooled one.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`make_paper_pipeline` model.
    X : pandas.DataFrame
        Cohort table, holding the harmoniser's batch column.

    Returns
    -------
    pooled : pandas.DataFrame or None
        Index: the patients so harmonised; columns: the batch column and ``reason``. ``None``
        for a model without a ``harmonize`` step.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> from p53radiomics.pipeline import pooled_harmonisation
    >>> pooled_harmonisation(model, X) is None  # no ComBat step in this model
    True
    """
    radiomics = fitted_branch(model, "radiomics")
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


def adapt_harmonisation(model, X_new):
    """A copy of a fitted combined model whose ComBat step has learnt the new scanners of `X_new`.

    The model's own ``preprocess`` step and its radiomics branch's steps before ``harmonize``
    compute the features of `X_new`'s patients; those on a scanner without estimates of its own
    (unseen in training, or with a single training patient) are given to
    :func:`~p53radiomics.harmonization.adapt_to_new_batches`, which learns each such scanner's
    effect from its patients' features, relative to the training reference. No label is taken;
    the patients on training scanners are not used. Every other fitted part is shared with
    `model`, which is unchanged.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`make_paper_pipeline` model built with ``harmonize=True``.
    X_new : pandas.DataFrame
        Cohort table of the new site (images, masks and the harmoniser's batch column), at least
        two patients per new scanner (the user guide says how many are enough).

    Returns
    -------
    model : Pipeline
        The copy, whose harmoniser's `adapted_batches_` are `X_new`'s new scanners.

    Raises
    ------
    ValueError
        If the model has no harmonisation step, if every scanner of `X_new` has estimates
        already, or (a :class:`~p53radiomics.CohortError` naming the patient and the column) if
        a new scanner has a single patient in `X_new` or a feature value is missing.

    See Also
    --------
    pooled_harmonisation : The patients the model harmonises with pooled estimates.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> from p53radiomics.pipeline import adapt_harmonisation
    >>> adapt_harmonisation(model, X)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the model's radiomics branch has no harmonisation step to adapt...
    """
    from .harmonization import adapt_to_new_batches

    old = fitted_branch(model, "radiomics")
    names = [name for name, _ in getattr(old, "steps", [])]
    harmonizer = dict(old.steps)["harmonize"] if "harmonize" in names else None
    if harmonizer is None or isinstance(harmonizer, str):  # a dropped branch or step
        raise ValueError(
            "the model's radiomics branch has no harmonisation step to adapt: build the model "
            "with make_paper_pipeline(..., harmonize=True)"
        )
    features = model.named_steps["preprocess"].transform(X_new)
    for _, step in old.steps[: names.index("harmonize")]:
        features = step.transform(features)
    scanner = features[harmonizer.batch_column]
    new = ~scanner.isin(harmonizer.batches_)
    if not new.any():
        raise ValueError(
            f"every scanner of X_new ({sorted(map(str, scanner.unique()))}, column "
            f"{harmonizer.batch_column!r}) has estimates in the model already: nothing to adapt"
        )
    radiomics = _with_step(old, "harmonize", adapt_to_new_batches(harmonizer, features[new]))
    fusion = _with_fitted_radiomics(copy.copy(model.named_steps["fusion"]), old, radiomics)
    return _with_steps(model, model.named_steps["preprocess"], fusion)


def use_cache(model, cache_dir):
    """A copy of a fitted combined model whose per-case caches live in `cache_dir`.

    A model remembers the cache folder it was fitted with; where it is used elsewhere (another
    machine, another output folder), its cached files must go where the user asked for outputs.
    The network and every fitted part are shared with `model`, not copied. Also importable as
    :func:`p53radiomics.study.use_cache` (the same function).

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`~p53radiomics.study.profile_pipeline` or
        :func:`~p53radiomics.make_paper_pipeline` model.
    cache_dir : str, os.PathLike or None
        The new cache folder of the preprocessing and radiomics steps (fitted, and the unfitted
        ones a clone or a refit of the copy starts from); ``None`` caches nothing.

    Returns
    -------
    model : Pipeline
        The copy; `model` itself is unchanged.

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> from p53radiomics.pipeline import use_cache
    >>> elsewhere = use_cache(model, tempfile.mkdtemp())
    >>> elsewhere.named_steps["preprocess"].cache_dir != model.named_steps["preprocess"].cache_dir
    True
    >>> elsewhere.named_steps["fusion"].final_estimator_ is model.named_steps["fusion"].final_estimator_
    True
    """
    cache_dir = None if cache_dir is None else str(cache_dir)
    preprocess = copy.copy(model.named_steps["preprocess"])
    preprocess.cache_dir = cache_dir
    fusion = copy.copy(model.named_steps["fusion"])
    old = fitted_branch(model, "radiomics")
    if isinstance(old, str):  # a dropped radiomics branch has no cache of its own
        return _with_steps(model, preprocess, fusion)

    def moved(branch):
        extract = copy.copy(branch.named_steps["extract"])
        extract.cache_dir = cache_dir
        return _with_step(branch, "extract", extract)

    # the unfitted branch too: a clone or a refit of the copy caches in `cache_dir` as well
    fusion.estimators = [(n, moved(e) if n == "radiomics" else e) for n, e in fusion.estimators]
    return _with_steps(model, preprocess, _with_fitted_radiomics(fusion, old, moved(old)))


def _with_step(branch, name, step):
    """A shallow copy of the pipeline `branch` whose step `name` is `step`."""
    copied = copy.copy(branch)
    copied.steps = [(n, step if n == name else s) for n, s in branch.steps]
    return copied


def _with_fitted_radiomics(fusion, old, new):
    """`fusion` (a copy) with its fitted radiomics branch `old` replaced by `new`."""
    fusion.estimators_ = [new if est is old else est for est in fusion.estimators_]
    fusion.named_estimators_ = type(fusion.named_estimators_)(
        **{**fusion.named_estimators_, "radiomics": new}
    )
    return fusion


def _with_steps(model, preprocess, fusion):
    """A shallow copy of `model` holding these ``preprocess`` and ``fusion`` steps."""
    copied = copy.copy(model)
    copied.steps = [
        (name, {"preprocess": preprocess, "fusion": fusion}.get(name, step))
        for name, step in model.steps
    ]
    return copied
