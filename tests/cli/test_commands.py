"""The console script's commands: ``--help`` of each and a bad sub-command, in a subprocess as a
user runs them, and the ``fit`` options that reach the pipeline."""

import pytest

from tests.cli.runner import console


@pytest.mark.parametrize("command", [[], ["demo"], ["fit"], ["evaluate"], ["predict"], ["card"]])
def test_help(command):
    result = console(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: p53radiomics" in result.stdout


def test_fit_options_reach_the_pipeline():
    from p53radiomics.cli import build_parser
    from p53radiomics.study import profile_pipeline

    args = build_parser().parse_args(
        ["fit", "--cohort", "c.csv", "--label", "p53", "--out", "m.joblib"]
        + ["--harmonize", "--context-slices", "2"]
    )
    assert (args.harmonize, args.context_slices) == (True, 2)
    model = profile_pipeline(
        "smoke", ["ltd"], harmonize=args.harmonize, context_slices=args.context_slices
    )
    params = model.get_params()
    assert params["fusion__radiomics__harmonize__batch_column"] == "scanner"
    assert params["fusion__radiomics__extract__passthrough"] == ("scanner",)
    assert params["fusion__deep__crop__context_slices"] == 2
    assert params["fusion__deep__cnn__n_phases"] == 3
    default = build_parser().parse_args(
        ["fit", "--cohort", "c.csv", "--label", "p53", "--out", "m.joblib"]
    )
    assert (default.harmonize, default.context_slices) == (False, 0)


def test_unknown_command_fails_with_usage():
    result = console("fly")
    assert result.returncode == 2 and "invalid choice" in result.stderr
