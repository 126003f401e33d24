"""The decision thresholds of a fitted combined model: chosen once on its training cohort
(:func:`fit_thresholds`), stored with it and read back (:func:`decision_thresholds`) wherever it
is applied. Re-exported by :mod:`p53radiomics.pipeline`."""

from ._fitted_model import MODEL_NAMES, branch_scores

__all__ = ["decision_thresholds", "fit_thresholds"]

# The fitted model's attribute holding its thresholds. Models pickled by 0.1.0.dev0 builds before
# the thresholds were keyed by branch keyed them by display name (MODEL_NAMES' values).
_THRESHOLDS = "p53radiomics_thresholds_"


def fit_thresholds(model, X, y, *, scores=None):
    """Choose each model's decision threshold on the training cohort and store it with `model`.

    Youden's threshold (:func:`~p53radiomics.metrics.youden_threshold`) of each branch's score
    and of the combined one, chosen once on the cohort the model was fitted on and applied
    unchanged to any other (:func:`decision_thresholds` reads them back).

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`make_paper_pipeline` model; its thresholds are stored on it.
    X : pandas.DataFrame
        The training cohort.
    y : array-like of shape (n_patients,)
        Its labels, 1 = P53-mutated.
    scores : dict of str to numpy.ndarray, default=None
        :func:`branch_scores` of `model` on `X`, where already computed.

    Returns
    -------
    thresholds : dict of str to float
        By branch (``"clinical"``, ``"radiomics"``, ``"deep"``, ``"combined"``).

    Examples
    --------
    >>> import tempfile
    >>> from p53radiomics import make_paper_pipeline
    >>> from p53radiomics.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(tempfile.mkdtemp(), n_patients=12, voxel_scale=3.0)
    >>> model = make_paper_pipeline(["ltd", "rim_aphe"], spacing=(3.0, 3.0, 3.0), cv=2)
    >>> model = model.set_params(fusion__radiomics="drop", fusion__deep="drop",
    ...                          preprocess__n_iterations=(5, 5)).fit(X, y)  # seconds
    >>> from p53radiomics.pipeline import decision_thresholds, fit_thresholds
    >>> _ = fit_thresholds(model, X, y)
    >>> sorted(decision_thresholds(model))
    ['clinical', 'combined']
    """
    from .metrics import youden_threshold

    scores = branch_scores(model, X) if scores is None else scores
    thresholds = {k: float(youden_threshold(y, v)) for k, v in scores.items()}
    setattr(model, _THRESHOLDS, thresholds)
    return dict(thresholds)


def decision_thresholds(model):
    """The decision thresholds stored with a fitted model, keyed by branch.

    Reads both forms: keyed by branch (:func:`fit_thresholds`) and keyed by display name
    (:data:`MODEL_NAMES`' values: ``"Clinical model"``...), as models pickled by earlier versions
    of ``p53radiomics`` stored them.

    Parameters
    ----------
    model : Pipeline
        A fitted :func:`make_paper_pipeline` model.

    Returns
    -------
    thresholds : dict of str to float or None
        By branch; ``None`` where the model carries none.

    Raises
    ------
    ValueError
        If a stored key is neither a branch nor a display name: a threshold is never guessed.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from p53radiomics.pipeline import decision_thresholds
    >>> old = Pipeline([("fusion", "passthrough")])
    >>> old.p53radiomics_thresholds_ = {"Combined model": 0.4, "DL model": 0.3}
    >>> decision_thresholds(old)
    {'combined': 0.4, 'deep': 0.3}
    """
    stored = getattr(model, _THRESHOLDS, None)
    if not stored:
        return None
    branch_of = {name: branch for branch, name in MODEL_NAMES.items()}
    unknown = [key for key in stored if key not in MODEL_NAMES and key not in branch_of]
    if unknown:
        raise ValueError(
            f"the model's thresholds name unknown models {unknown}; expected branches "
            f"{list(MODEL_NAMES)} (or their display names {list(branch_of)})"
        )
    return {branch_of.get(key, key): float(value) for key, value in stored.items()}
