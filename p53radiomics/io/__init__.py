"""Images in and out, and the cohort table.

This is the one place where an image or mask cell of a cohort table is read. A cell is either a path
(any format SimpleITK reads: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``..., or a folder holding one
DICOM series) or an in-memory :class:`SimpleITK.Image`; a mask cell may also be a DICOM SEG or an
RTSTRUCT file, placed on its image's grid. A text cell may end in a selector (:func:`parse_cell`):
``folder#series=UID``, ``folder#description=*arterial*``, ``folder#number=4`` (one series of a folder
holding several), ``seg.dcm#segment=2`` or ``seg.dcm#segment=liver tumour`` (a segment),
``rtstruct.dcm#roi=GTV`` (an ROI). Every step of the library reads cells
through :func:`read_image`, :func:`read_mask` or :func:`load_case`, so they all accept the same things
and fail with the same messages, which name the patient id and the column.

The cohort table (see the user guide) is a :class:`pandas.DataFrame` with one row per patient, its
index holding unique patient ids. For each phase ``p`` the column ``p`` holds the image and
``f"{p}_mask"`` the tumour ROI; where a phase has no mask column of its own, the column ``mask``
serves all phases. Every other column is clinical.

Two tolerances govern what is taken as the same geometry, each in one place:
:data:`GEOMETRY_TOLERANCE` (a mask against its image, for every step) and
:data:`SLICE_SPACING_TOLERANCE` (the slices of a DICOM series against an evenly spaced grid).

Everything is imported from here; the private modules hold, one concern each:

- ``p53radiomics._settings`` (outside the package, importing nothing, shared with the CNN and the
  synthetic cohort): :data:`DEFAULT_PHASES`, the two tolerances and the id columns tried in a CSV;
- ``_phases``: the phase names and the image and mask column of each (:func:`phase_columns`);
- ``_geometry``: an image's geometry, from its pixels or its header, and the rule of
  :data:`GEOMETRY_TOLERANCE` (:func:`check_geometry`);
- ``_selectors``: the selector a cell may end in (:func:`parse_cell`), one parser for all;
- ``_dicom``: a DICOM series folder read from its headers (one series, or the one a selector
  names), with the checks that its slices make one evenly spaced volume;
- ``_seg``: a DICOM SEG's segment placed on its image's grid by the frames' plane positions
  (highdicom, imported when needed), :data:`SEG_FRACTION_THRESHOLD` for FRACTIONAL segments;
- ``_rtstruct``: an RTSTRUCT's ROI rasterised onto its image's grid (even-odd, voxel centres);
- ``_voxels``: no NaN, infinite or constant image (:func:`check_voxel_values`), NIfTI files checked
  on their stored values;
- ``_images``: one cell read as an image or a mask (:func:`read_image`, :func:`read_mask`) and one
  patient's case (:func:`load_case`);
- ``_table``: the cohort CSV (:func:`read_cohort_csv`) and the checks of a whole table
  (:func:`validate_cohort`).

:func:`binary_labels` and :func:`check_binary_target` live with the metrics
(:mod:`p53radiomics.metrics`), which never import the image libraries; they are re-exported here.
"""

# Outside `__all__`, as before the module became a package: `from .io import CohortError` (used by
# the study) and `p53radiomics.io.ID_COLUMN_CANDIDATES` keep working.
from .._settings import (
    DEFAULT_PHASES,
    GEOMETRY_TOLERANCE,
    SLICE_SPACING_TOLERANCE,
)
from .._settings import ID_COLUMN_CANDIDATES as ID_COLUMN_CANDIDATES
from ..exceptions import CohortError as CohortError
from ..metrics import binary_labels, check_binary_target
from ._geometry import check_geometry
from ._images import check_label, load_case, read_image, read_mask
from ._phases import PhaseColumns, check_mask_set, mask_sets, phase_columns
from ._seg import SEG_FRACTION_THRESHOLD
from ._selectors import parse_cell
from ._table import mask_set_patients, read_cohort_csv, validate_cohort
from ._voxels import check_voxel_values

__all__ = [
    "DEFAULT_PHASES",
    "GEOMETRY_TOLERANCE",
    "SEG_FRACTION_THRESHOLD",
    "SLICE_SPACING_TOLERANCE",
    "PhaseColumns",
    "binary_labels",
    "check_binary_target",
    "check_geometry",
    "check_label",
    "check_mask_set",
    "check_voxel_values",
    "load_case",
    "mask_set_patients",
    "mask_sets",
    "parse_cell",
    "phase_columns",
    "read_cohort_csv",
    "read_image",
    "read_mask",
    "validate_cohort",
]
