"""Settings for the whole test session: the tests under ``tests/`` and the package's doctests.

The README's examples and the doctests make folders with ``tempfile.mkdtemp()``, as a user would.
Inside the test session those folders (and the temporary files of the subprocesses a test starts)
go under pytest's own temporary folder, which pytest prunes to its last three runs, instead of
piling up in the system's temporary folder run after run (about 100 MB a run).
"""

import tempfile

import pytest


@pytest.fixture(scope="session")
def _session_tempdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tempfile"))


@pytest.fixture(autouse=True)
def _temporary_files_under_pytest(_session_tempdir, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", _session_tempdir)
    monkeypatch.setenv("TMPDIR", _session_tempdir)
