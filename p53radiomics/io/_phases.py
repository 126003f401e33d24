"""The phases of a cohort table, and the image and mask column of each."""

from collections import namedtuple

import pandas as pd

from .._settings import DEFAULT_PHASES
from ..exceptions import CohortError

__all__ = ["PhaseColumns", "check_phases", "phase_columns"]

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


def phase_columns(X, phases=DEFAULT_PHASES):
    """Resolve the image and mask column of each phase.

    Parameters
    ----------
    X : pandas.DataFrame
        Cohort table.
    phases : sequence of str, default=("ap", "pvp", "dp")
        Phase names; each must be a column of `X`.

    Returns
    -------
    columns : list of PhaseColumns
        One ``(phase, image, mask)`` named tuple per phase, in the order given. ``mask`` is
        ``f"{phase}_mask"`` when that column exists, else ``"mask"``.

    Raises
    ------
    CohortError
        If a phase has no column in `X` (an unknown phase name), or neither ``f"{phase}_mask"`` nor
        ``"mask"`` exists. Every missing column is listed at once.

    Examples
    --------
    >>> import pandas as pd
    >>> from p53radiomics.io import phase_columns
    >>> X = pd.DataFrame({"ap": ["a.nii"], "pvp": ["p.nii"], "mask": ["m.nii"], "ap_mask": ["am.nii"]})
    >>> phase_columns(X, phases=("ap", "pvp"))
    [PhaseColumns(phase='ap', image='ap', mask='ap_mask'), PhaseColumns(phase='pvp', image='pvp', mask='mask')]
    """
    phases = check_phases(phases)
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"the cohort table must be a pandas DataFrame, got {type(X).__name__}")
    problems = []  # (message, column): every missing column is reported at once
    result = []
    for phase in phases:
        if phase not in X.columns:
            problems.append((f"unknown phase {phase!r}: no column {phase!r}", phase))
            continue
        mask = f"{phase}_mask" if f"{phase}_mask" in X.columns else "mask"
        if mask not in X.columns:
            problems.append(
                (
                    f"phase {phase!r} has no mask: neither column {phase + '_mask'!r} nor 'mask'",
                    f"{phase}_mask",
                )
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
