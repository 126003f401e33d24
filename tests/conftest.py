import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """The project's reference data: $P53RADIOMICS_SHARED_DATA, else ../shared/data beside the repo."""
    candidates = [
        os.environ.get("P53RADIOMICS_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        "/work/shared/data",
    ]
    for candidate in candidates:
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data():
    """Folder of the real reference data (PyRadiomics baselines, aSAH, dcurves, an abdominal MR).

    Tests that need it are skipped, with the reason, where the folder is not found.
    """
    folder = shared_data_dir()
    if folder is None:
        pytest.skip(
            "reference data not found: set P53RADIOMICS_SHARED_DATA to the shared/data folder"
        )
    return folder


@pytest.fixture(scope="session")
def synthetic_cohort(tmp_path_factory):
    """A small synthetic cohort on disk (8 patients, coarse voxels): ``(X, y, directory)``.

    Read-only: tests must not write into its folder (use ``tmp_path``).
    """
    from p53radiomics.datasets import make_synthetic_cohort

    directory = tmp_path_factory.mktemp("synthetic_cohort")
    X, y = make_synthetic_cohort(directory, n_patients=8, random_state=0, voxel_scale=2.5)
    return X, y, directory
