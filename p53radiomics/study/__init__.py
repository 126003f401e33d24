"""The whole study as one job: split, Tables 1-5, DeLong tests, nomogram, calibration, decision
curves and Grad-CAM, written to a folder with a report a clinician can read.

Used by the command line (``p53radiomics demo``, ``fit``, ``evaluate``) and callable from Python
(:func:`run_study`, :func:`evaluate_model`). Every output goes under the folder it is given.

The package's modules, by stage: ``_profiles`` (:class:`Profile`, :data:`PROFILES`,
:func:`profile_pipeline`), ``_cohort`` (:func:`prepare_cohort`, :func:`skip_bad_cases`),
``_tables`` (Tables 1-5 and the DeLong tests), ``_figures`` (the PNG figures),
``_reproducibility`` (the ICCs of the repeated ROIs and the robustness filter's comparison),
``_external`` (the study's external cohort and :func:`evaluate_model`), ``_harmonisation``
(:func:`harmonisation_effect`: the radiomics model without and with ComBat) and ``_run``
(:func:`run_study`). :func:`use_cache` is
:func:`p53radiomics.pipeline.use_cache`, re-exported here.
"""

# MODEL_NAMES, PREOPERATIVE_COLUMNS, TABLE_COLUMNS and LAB_BINS stay importable from here, as
# before the study became a package, but are not in __all__ (they were not then either);
# check_external_arguments is the command line's check of --n-external before any work
from ..pipeline import MODEL_NAMES, use_cache  # noqa: F401
from ._cohort import prepare_cohort, skip_bad_cases
from ._external import check_external_arguments, evaluate_model  # noqa: F401
from ._harmonisation import HarmonisationEffect, harmonisation_effect
from ._profiles import PREOPERATIVE_COLUMNS, PROFILES, Profile, profile_pipeline  # noqa: F401
from ._run import StudyResult, run_study
from ._tables import LAB_BINS, TABLE_COLUMNS  # noqa: F401

__all__ = [
    "HarmonisationEffect",
    "PROFILES",
    "Profile",
    "StudyResult",
    "evaluate_model",
    "harmonisation_effect",
    "prepare_cohort",
    "profile_pipeline",
    "run_study",
    "skip_bad_cases",
    "use_cache",
]
