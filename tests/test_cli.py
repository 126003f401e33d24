"""The command line, run as a user runs it: a subprocess of the installed console script."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest


def _run(*args, cwd=None):
    exe = shutil.which("p53radiomics") or None
    cmd = [exe, *args] if exe else [sys.executable, "-m", "p53radiomics.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help(args):
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert "usage: p53radiomics" in result.stdout


def test_demo_prints_table_1_and_writes_only_under_out(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = _run(
        "demo",
        "--out",
        str(tmp_path / "out"),
        "--n-patients",
        "12",
        "--voxel-scale",
        "3",
        "--n-jobs",
        "1",
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Table 1" in result.stdout and "rim_aphe" in result.stdout and "Total time" in result.stdout
    )
    table = pd.read_csv(tmp_path / "out" / "table1.csv", index_col=[0, 1])
    assert {"ltd", "rim_aphe", "afp", "scanner"} <= set(table.index.get_level_values(0))
    assert (tmp_path / "out" / "cohort" / "cohort.csv").is_file()
    assert list(work.iterdir()) == []  # nothing in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "work"]


def test_unknown_command_fails_with_usage():
    result = _run("fly")
    assert result.returncode == 2 and "invalid choice" in result.stderr
