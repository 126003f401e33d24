"""Binary labels: checked against a cohort table, and turned into 1 = P53-mutated.

Here, beside the statistics that read them, rather than in :mod:`p53radiomics.io`, so that the
metrics never import the image libraries; :mod:`p53radiomics.io` re-exports both functions.
"""

import numbers

import numpy as np
import pandas as pd

from ..exceptions import CohortError


def check_binary_target(y, index=None):
    """Check that `y` is a binary label aligned with a cohort table.

    Parameters
    ----------
    y : array-like of shape (n_patients,)
        Labels (1 = P53-mutated).
    index : pandas.Index, default=None
        The cohort table's index; when `y` is a Series its index must hold the same ids.

    Returns
    -------
    y : numpy.ndarray
        The labels as an array, in the order of `index`.

    Raises
    ------
    CohortError
        If `y` holds a missing value (naming the patient), has another length than the table, or
        does not hold exactly two classes.

    Examples
    --------
    >>> from p53radiomics.io import check_binary_target
    >>> check_binary_target([0, 1, 1])
    array([0, 1, 1])
    >>> check_binary_target([1, 1, 1])
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: y holds a single class (1); a binary label with both classes is needed
    """
    return _aligned_labels(y, index, column="y", located=None)


def _aligned_labels(y, index, *, column, located):
    """The checks of :func:`check_binary_target`; `located` is the column named by table-level errors."""
    if isinstance(y, pd.Series) and index is not None:
        if len(y) != len(index):
            raise CohortError(f"y has {len(y)} labels for {len(index)} patients", column=located)
        if not y.index.equals(index):
            unknown = index.difference(y.index)
            if len(unknown):
                raise CohortError(
                    "no label for this patient in y", patient_id=unknown[0], column=column
                )
            y = y.loc[index]
    values = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y.to_numpy())
    if index is not None and len(values) != len(index):
        raise CohortError(f"y has {len(values)} labels for {len(index)} patients", column=located)
    missing = values.isna().to_numpy()
    if missing.any():
        where = (
            index[np.flatnonzero(missing)[0]]
            if index is not None
            else int(np.flatnonzero(missing)[0])
        )
        raise CohortError("label is missing", patient_id=where, column=column)
    classes = pd.unique(values)
    if len(classes) != 2:
        shown = ", ".join(map(str, classes))
        if len(classes) == 1:
            raise CohortError(
                f"y holds a single class ({shown}); a binary label with both classes is needed",
                column=located,
            )
        raise CohortError(f"y must be binary, got {len(classes)} classes ({shown})", column=located)
    return values.to_numpy()


def _is_bool(value):
    return isinstance(value, bool | np.bool_)


def binary_labels(y, index=None, *, pos_label=None, column=None):
    """The labels as 0/1, 1 for the positive (P53-mutated) class, which must be named unless obvious.

    Parameters
    ----------
    y : array-like of shape (n_patients,)
        Labels with two classes.
    index : pandas.Index, default=None
        The cohort table's index; when `y` is a Series its index must hold the same ids (as in
        :func:`check_binary_target`).
    pos_label : object, default=None
        The label of the positive class. Needed unless the labels are 0/1 (integers or floats:
        1 is positive) or booleans (``True`` is positive); ``pos_label=0`` is allowed, and makes 0
        the positive class.
    column : str, default=None
        Name of the labels in errors; default: the name of `y` if it is a named Series (the label
        column of :func:`read_cohort_csv`), else ``"y"``.

    Returns
    -------
    labels : numpy.ndarray of int64, shape (n_patients,)
        1 where the label is the positive class, 0 elsewhere, in the order of `index`.

    Raises
    ------
    CohortError
        Naming `column`: as :func:`check_binary_target` (a missing label, naming the patient;
        another length than the table; not exactly two classes); labels that are neither 0/1 nor
        booleans without `pos_label`, or a `pos_label` that is not one of the labels, naming the
        labels found.

    Notes
    -----
    With labels such as ``"mutant"``/``"wild-type"``, a scikit-learn classifier's
    ``predict_proba(X)[:, 1]`` is the probability of the class that sorts last (``"wild-type"``):
    the opposite of what a user means, without a word. Hence no positive class is guessed but
    for 0/1 and booleans; this function is where the study's code turns labels into 1 =
    P53-mutated.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.io import binary_labels
    >>> binary_labels([0, 1, 1])
    array([0, 1, 1])
    >>> y = pd.Series(["mutant", "wild-type", "mutant"], name="p53")
    >>> binary_labels(y, pos_label="mutant")
    array([1, 0, 1])
    >>> binary_labels(y)
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: column 'p53': labels 'mutant', 'wild-type' are not 0/1 or booleans: say which one is P53-mutated (pos_label=..., or --positive on the command line)
    >>> binary_labels(y, pos_label="mutated")
    Traceback (most recent call last):
    ...
    p53radiomics.exceptions.CohortError: column 'p53': pos_label='mutated' is not one of the labels found ('mutant', 'wild-type')
    """
    if column is None:
        named = isinstance(y, pd.Series) and y.name is not None
        column = str(y.name) if named else "y"
    values = _aligned_labels(y, index, column=column, located=column)
    classes = [c.item() if isinstance(c, np.generic) else c for c in pd.unique(values)]
    shown = ", ".join(repr(c) for c in sorted(classes, key=str))
    if pos_label is None:
        if all(_is_bool(c) for c in classes):
            positive = np.array([bool(v) for v in values])
        elif all(isinstance(c, numbers.Real) and not _is_bool(c) for c in classes) and {
            float(c) for c in classes
        } == {0.0, 1.0}:
            positive = np.array([float(v) == 1.0 for v in values])
        else:
            raise CohortError(
                f"labels {shown} are not 0/1 or booleans: say which one is P53-mutated "
                "(pos_label=..., or --positive on the command line)",
                column=column,
            )
    else:
        if not any(_same_label(c, pos_label) for c in classes):
            raise CohortError(
                f"pos_label={pos_label!r} is not one of the labels found ({shown})", column=column
            )
        positive = np.array([_same_label(v, pos_label) for v in values])
    return positive.astype(np.int64)


def _same_label(value, pos_label):
    try:
        return bool(value == pos_label)
    except (TypeError, ValueError):
        return False
