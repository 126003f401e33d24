"""The one small study that tests/study/test_run.py and tests/study/test_reproducibility.py read.

Both modules carry the ``xdist_group("study")`` mark, so that under ``make test`` (pytest-xdist,
``--dist loadgroup``) they run on one worker and the session fixture below runs once.
"""

import contextlib
import dataclasses
import io

import pytest

# The smallest study that runs: 14 patients at voxel_scale 3 (8 and 6: about as few as the stratified
# split and the 2-fold stacking take; at voxel_scale 4 a case's phase is constant in its body and
# is refused), 6 of them with repeated ROIs (the default share would give 1), so that the
# training cohort has 2 of them or more for the robustness filter; and the smallest external
# cohort (EV) run_study accepts: 6 patients, 2 on each external scanner.
SMALL_STUDY = {"n_patients": 14, "voxel_scale": 3.0, "n_repeated": 6, "n_external": 6}


@pytest.fixture(scope="session")
def small_study_settings():
    """``run_study``'s cohort settings of :func:`small_study` (a fresh copy)."""
    return dict(SMALL_STUDY)


@pytest.fixture(scope="session")
def small_profile():
    """The smoke profile with one CNN configuration in the comparison (MC ResNet18; FF trains
    three backbones), a small final CNN in MC mode (a MobileNet: the smallest backbone) and no
    Grad-CAM panel."""
    from p53radiomics.study import PROFILES

    return dataclasses.replace(PROFILES["smoke"], modes=("mc",), final_mode="mc", n_gradcam=0,
                               final_backbone="mobilenet_v3_small")  # fmt: skip


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, small_profile):
    """``(out, result, console)``: :func:`run_study` of :data:`SMALL_STUDY` with
    :func:`small_profile` in one job, its output folder and what it printed. Read-only."""
    from p53radiomics.study import run_study

    out = tmp_path_factory.mktemp("small_study")
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        result = run_study(out, profile=small_profile, n_jobs=1, **SMALL_STUDY)
    return out, result, console.getvalue()
