"""Where the project's reference data are (a helper module, not a test module: conftest.py and the
tests that need the path at import time, to parametrize over its files, both import it, as
``from tests._shared_data import shared_data_dir``; fixtures are never imported from a conftest)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """The project's reference data: $P53RADIOMICS_SHARED_DATA, else ../shared/data beside the repo."""
    candidates = [
        os.environ.get("P53RADIOMICS_SHARED_DATA"),
        REPO.parent / "shared" / "data",
    ]
    for candidate in candidates:
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate)
    return None
