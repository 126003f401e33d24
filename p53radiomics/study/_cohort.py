"""Cohort preparation: check the table and its labels before any work, then validate or skip
each patient."""

import numpy as np
import pandas as pd

from ..io import DEFAULT_PHASES, CohortError, binary_labels, validate_cohort

__all__ = ["prepare_cohort", "skip_bad_cases"]


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
