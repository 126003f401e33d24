"""Settings shared across the package, each defined once: the default phases, the id columns
tried in a cohort CSV, the two geometry tolerances, and the study's preprocessing and fold count
(the defaults of N4Resampler, make_paper_pipeline and the full profile). Public through :mod:`p53radiomics.io`;
here, in a module that imports nothing, so that the CNN sub-package and the synthetic cohort can
use them without the image libraries."""

__all__ = [
    "DEFAULT_PHASES",
    "GEOMETRY_TOLERANCE",
    "ID_COLUMN_CANDIDATES",
    "SLICE_SPACING_TOLERANCE",
    "STUDY_CV",
    "STUDY_MARGIN_MM",
    "STUDY_N4_ITERATIONS",
    "STUDY_SPACING",
]

#: The three dynamic phases of the study: arterial, portal venous and delayed.
DEFAULT_PHASES = ("ap", "pvp", "dp")

#: Names tried, in this order, for the id column of a cohort CSV when none is given.
ID_COLUMN_CANDIDATES = ("patient_id", "id", "case_id", "subject_id", "patient")

#: How far a mask's geometry may be from its image's and still be taken as the image's grid. Origin
#: and spacing: a fraction of the image's smallest voxel spacing (1e-3 of a 0.8-mm voxel is 0.8 µm,
#: far above the float rounding of file formats and converters, far below anything anatomical).
#: Direction cosines: an absolute difference (1e-3 is about 0.06°). Sizes must be equal. It is the
#: default ``geometry_tolerance`` of :func:`check_geometry`, :func:`load_case` and
#: :func:`validate_cohort`; every step reads its cases through :func:`load_case`, which, once a mask
#: passes, gives it its image's geometry exactly, so no later step (N4, resampling, cropping,
#: PyRadiomics) applies a tolerance of its own.
GEOMETRY_TOLERANCE = 1e-3

#: How far a slice of a DICOM series may lie from its place on the evenly spaced grid that the
#: series is read onto, as a fraction of the slice spacing; also the largest in-plane shift between
#: slices, as a fraction of the pixel spacing. A missing slice puts the slices after it a whole
#: spacing off; positions written with two decimals (0.005 mm rounding) stay far below it.
SLICE_SPACING_TOLERANCE = 0.05

#: The study's preprocessing: voxels resampled to 1 x 1 x 1 mm, N4 fitted over 4 levels of 50
#: iterations, and (this library's addition) each volume cropped to the ROI plus 30 mm first.
STUDY_SPACING = (1.0, 1.0, 1.0)
STUDY_N4_ITERATIONS = (50, 50, 50, 50)
STUDY_MARGIN_MM = 30.0

#: Folds of the study's stacking and of the LASSO steps' cross-validation.
STUDY_CV = 5
