"""What a cohort cell may say after its path: which series of a folder, which segment of a DICOM
SEG, which ROI of an RTSTRUCT. One parser (:func:`parse_cell`) for all of them.

The syntax is ``PATH#KEY=VALUE``, one selector per cell:

- ``folder#series=1.2.840...``: the series of that SeriesInstanceUID;
- ``folder#description=*arterial*``: the series whose SeriesDescription matches the pattern
  (:mod:`fnmatch` wildcards ``*``, ``?``, ``[...]``; case-insensitive; without a wildcard the
  description must equal the pattern);
- ``folder#number=4``: the series of that SeriesNumber;
- ``seg.dcm#segment=2`` (a SegmentNumber: digits only) or ``seg.dcm#segment=liver tumour`` (a
  SegmentLabel);
- ``rtstruct.dcm#roi=GTV``: the ROI of that ROIName.

A ``#`` is read as the start of a selector only where it is followed by one of the keys above and
``=``: the first such ``#KEY=`` ends the path, and everything after the ``=`` is the value (which may
itself hold ``#``). Any other ``#`` belongs to the path (``/data/case#3/ap.nii.gz`` is a path). A
:class:`os.PathLike` cell (e.g. a :class:`pathlib.Path`) is always a path, never parsed: that is
the way to give a path that holds ``#series=`` and the like literally.
"""

import os
import re
from collections import namedtuple

__all__ = [
    "SELECTOR_KEYS",
    "SERIES_KEYS",
    "CellSelector",
    "parse_cell",
    "path_text",
    "selector_hint",
]

#: The keys a cell's selector may use, and what each selects.
SELECTOR_KEYS = {
    "series": "a DICOM series of a folder, by SeriesInstanceUID",
    "description": "a DICOM series of a folder, by a SeriesDescription pattern",
    "number": "a DICOM series of a folder, by SeriesNumber",
    "segment": "a segment of a DICOM SEG, by SegmentNumber or SegmentLabel",
    "roi": "an ROI of a DICOM RTSTRUCT, by ROIName",
}

#: The keys that select a series of a folder.
SERIES_KEYS = ("series", "description", "number")

_SELECTOR = re.compile(r"#(" + "|".join(SELECTOR_KEYS) + r")=", re.ASCII)

#: A cell split into its path and its selector: ``key`` and ``value`` are ``None`` without one.
CellSelector = namedtuple("CellSelector", ["path", "key", "value"])


def parse_cell(cell):
    """Split a cohort cell into its path and its selector.

    Parameters
    ----------
    cell : str, os.PathLike or object
        A table cell. Only a :class:`str` is parsed; anything else is returned as the path.

    Returns
    -------
    parsed : CellSelector
        ``(path, key, value)``; ``key`` and ``value`` are ``None`` when the cell has no selector.

    Raises
    ------
    ValueError
        If a selector's value is empty, or a ``number`` is not a whole number.

    Examples
    --------
    >>> from p53radiomics.io import parse_cell
    >>> parse_cell("exam/seg.dcm#segment=2")
    CellSelector(path='exam/seg.dcm', key='segment', value='2')
    >>> parse_cell("exam/rt.dcm#roi=GTV #1")
    CellSelector(path='exam/rt.dcm', key='roi', value='GTV #1')
    >>> parse_cell("case#3/ap.nii.gz")
    CellSelector(path='case#3/ap.nii.gz', key=None, value=None)
    """
    if not isinstance(cell, str):
        return CellSelector(cell, None, None)
    found = _SELECTOR.search(cell)
    if found is None:
        return CellSelector(cell, None, None)
    key, value = found.group(1), cell[found.end() :].strip()
    if not value:
        raise ValueError(f"the selector '#{key}=' of {cell!r} has no value")
    if key == "number" and not re.fullmatch(r"[+-]?\d+", value):
        raise ValueError(
            f"the selector '#number=' of {cell!r} must be a SeriesNumber (a whole number), "
            f"got {value!r}"
        )
    return CellSelector(cell[: found.start()], key, value)


def selector_hint(keys):
    """A sentence telling how to give one of the selectors `keys` in a cell."""
    shown = ", ".join(f"'#{k}=...' ({SELECTOR_KEYS[k]})" for k in keys)
    return f"choose one by appending a selector to the cell's path: {shown}"


def path_text(path):
    """A cell's path as text, for the messages."""
    return os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path)
