"""The phases of a cohort table, and the image and mask column of each.

A cohort table may hold repeated ROIs (a second reader's, a second session's) beside the primary
masks: the mask set ``s`` of phase ``p`` is the column ``f"{p}_mask_{s}"``, else ``f"mask_{s}"``
(one mask serving every phase, as ``mask`` does for the primary ROI), e.g. ``ap_mask_reader2`` or
``mask_session2``. Those names are reserved: a column named so is a mask, never a clinical
column. The resolution of every mask column, primary or repeated, is :func:`phase_columns`.
"""

import re
from collections import namedtuple

import pandas as pd

from .._settings import DEFAULT_PHASES
from ..exceptions import CohortError

__all__ = [
    "PhaseColumns",
    "check_mask_set",
    "check_phases",
    "is_mask_column",
    "mask_sets",
    "phase_columns",
]

#: What a mask set's name may hold: a letter or digit, then letters, digits, ``_`` or ``-``.
_MASK_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

#: Image and mask columns of one phase.
PhaseColumns = namedtuple("PhaseColumns", ["phase", "image", "mask"])


def check_phases(phases):
    """`phases` as a tuple of unique, non-empty strings; a TypeError or ValueError says what is wrong."""
    if isinstance(phases, str) or not hasattr(phases, "__iter__"):
        raise TypeError(
            f"phases must be a sequence of phase names, e.g. ('ap', 'pvp', 'dp'); got {phases!r}"
        )
    phases = tuple(phases)
    if not phases:
        raise ValueError("phases must name at least one phase")
    bad = [p for p in phases if not isinstance(p, str) or not p]
    if bad:
        raise TypeError(f"phase names must be non-empty strings; got {bad!r}")
    dupes = sorted({p for p in phases if phases.count(p) > 1})
    if dupes:
        raise ValueError(f"phase names must be unique; repeated: {dupes!r}")
    return phases


def check_mask_set(mask_set):
    """`mask_set` checked: ``None`` (the primary masks) or a name such as ``"reader2"``."""
    if mask_set is None:
        return None
    if not isinstance(mask_set, str) or not _MASK_SET_NAME.fullmatch(mask_set):
        raise ValueError(
            "mask_set must be None (the primary masks) or the name of a set of repeated masks "
            "(letters, digits, '_' or '-', e.g. 'reader2' for the columns 'ap_mask_reader2' or "
            f"'mask_reader2'); got {mask_set!r}"
        )
    return mask_set


def _mask_set_of(column, phases):
    """The mask set a column belongs to (``f"{phase}_mask_{s}"`` or ``f"mask_{s}"``), or None."""
    column = str(column)
    for prefix in (*(f"{p}_mask_" for p in phases), "mask_"):
        if column.startswith(prefix) and _MASK_SET_NAME.fullmatch(column[len(prefix) :]):
            return column[len(prefix) :]
    return None


def mask_sets(columns, phases=DEFAULT_PHASES):
    """The names of the repeated mask sets among `columns`, in the order they first appear.

    Parameters
    ----------
    columns : iterable of str
        Columns of a cohort table.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phase names.

    Returns
    -------
    names : list of str
        E.g. ``["reader2", "session2"]`` for the columns ``ap_mask_reader2`` and
        ``mask_session2``.

    Examples
    --------
    >>> from p53radiomics.io import mask_sets
    >>> mask_sets(["ap", "ap_mask", "ap_mask_reader2", "mask_session2", "age"], phases=("ap",))
    ['reader2', 'session2']
    """
    phases = check_phases(phases)
    found = (_mask_set_of(c, phases) for c in columns)
    return list(dict.fromkeys(s for s in found if s is not None))


def is_mask_column(column, phases=DEFAULT_PHASES):
    """Whether `column` holds masks (``f"{p}_mask"``, ``mask`` or a repeated set's), not clinical data."""
    phases = check_phases(phases)
    primary = column == "mask" or column in {f"{p}_mask" for p in phases}
    return primary or _mask_set_of(column, phases) is not None


def phase_columns(X, phases=DEFAULT_PHASES, mask_set=None):
    """Resolve the image and mask column of each phase.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phase names; each must be a column of `X`.
    mask_set : str or None, default=None
        ``None``: the primary masks. A name, e.g. ``"reader2"``: that set of repeated masks.

    Returns
    -------
    columns : list of PhaseColumns
        One ``(phase, image, mask)`` named tuple per phase, in the order given. ``mask`` is
        ``f"{phase}_mask"`` when that column exists, else ``"mask"``; for a mask set ``s``,
        ``f"{phase}_mask_{s}"`` when that column exists, else ``f"mask_{s}"``.

    Raises
    ------
    CohortError
        If a phase has no column in `X` (an unknown phase name), or no mask column (neither of the
        two names above). Every missing column is listed at once.
    ValueError
        If `mask_set` is not a valid name (see :func:`check_mask_set`).

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.io import phase_columns
    >>> X = pd.DataFrame({"ap": ["a.nii"], "pvp": ["p.nii"], "mask": ["m.nii"], "ap_mask": ["am.nii"]})
    >>> phase_columns(X, phases=("ap", "pvp"))
    [PhaseColumns(phase='ap', image='ap', mask='ap_mask'), PhaseColumns(phase='pvp', image='pvp', mask='mask')]
    >>> X["mask_reader2"] = ["m2.nii"]
    >>> [c.mask for c in phase_columns(X, phases=("ap", "pvp"), mask_set="reader2")]
    ['mask_reader2', 'mask_reader2']
    """
    phases = check_phases(phases)
    mask_set = check_mask_set(mask_set)
    suffix = "" if mask_set is None else f"_{mask_set}"
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"the cohort table must be a pandas DataFrame, got {type(X).__name__}")
    problems = []  # (message, column): every missing column is reported at once
    result = []
    for phase in phases:
        if phase not in X.columns:
            problems.append((f"unknown phase {phase!r}: no column {phase!r}", phase))
            continue
        own, shared = f"{phase}_mask{suffix}", f"mask{suffix}"
        mask = own if own in X.columns else shared
        if mask not in X.columns:
            which = "mask" if mask_set is None else f"mask of the set {mask_set!r}"
            problems.append(
                (f"phase {phase!r} has no {which}: neither column {own!r} nor {shared!r}", own)
            )
            continue
        result.append(PhaseColumns(phase, phase, mask))
    if problems:
        raise CohortError(
            "; ".join(m for m, _ in problems)
            + f" (the table's columns are {list(map(str, X.columns))})",
            column=problems[0][1],
        )
    return result
