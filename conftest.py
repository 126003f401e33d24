"""Settings for the whole test session: the tests under ``tests/`` and the package's doctests.

The README's examples and the doctests make folders with ``tempfile.mkdtemp()``, as a user would.
Inside the test session those folders (and the temporary files of the subprocesses a test starts)
go under pytest's own temporary folder, which pytest prunes to its last three runs, instead of
piling up in the system's temporary folder run after run (about 100 MB a run).
"""

import os
import tempfile

import pytest

# Under pytest-xdist (``make test``) each worker is one of several test processes sharing the
# machine's cores. OpenMP's and torch's thread pools sized to every core would oversubscribe them,
# and OpenMP threads spin while they wait: a grid-search example took 5 to 8 times longer. Each
# worker runs one thread, set here before anything imports torch (subprocesses inherit it).
if "PYTEST_XDIST_WORKER" in os.environ:
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")


@pytest.fixture(scope="session")
def _session_tempdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tempfile"))


@pytest.fixture(autouse=True)
def _temporary_files_under_pytest(_session_tempdir, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", _session_tempdir)
    monkeypatch.setenv("TMPDIR", _session_tempdir)
