"""How the command-line tests run ``p53radiomics`` (a helper module, not a test module, as
``tests/_shared_data.py`` is): the console script in a subprocess, or its entry point,
:func:`p53radiomics.cli.main`, in this process with the same arguments, and what they read back.

In this process a run costs no new import of torch and PyRadiomics; what a user would see is what
the tests read: the exit code, the standard output and error, and warnings, which the in-process
runner formats onto standard error as Python's default handler does.
"""

import contextlib
import io
import shutil
import subprocess
import sys
import warnings

import pandas as pd

from p53radiomics.cli import main


def console(*args, cwd=None):
    """The installed console script (or ``python -m p53radiomics.cli``) in a subprocess."""
    exe = shutil.which("p53radiomics")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "p53radiomics.cli", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, encoding="utf-8", cwd=cwd, timeout=900
    )


def run_cli(*args):
    """``p53radiomics ARGS`` through the console script's entry point, in this process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("default")
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    for w in caught:
        stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def absolute_table(folder):
    """The cohort CSV of `folder` with absolute paths, to be rewritten elsewhere."""
    table = pd.read_csv(folder / "cohort.csv", dtype={"patient_id": str})
    for column in ("ap", "pvp", "dp", "ap_mask", "pvp_mask", "dp_mask"):
        table[column] = [str(folder / p) for p in table[column]]
    return table


def one_line_error(result, *expected):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1, result.stderr
    for text in expected:
        assert text in error[0], error[0]
