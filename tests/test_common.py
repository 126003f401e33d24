"""scikit-learn's estimator checks on every numeric estimator, and a registry that makes sure every
estimator p53radiomics defines is checked somewhere.

Numeric estimators (arrays in, arrays out) run :func:`sklearn.utils.estimator_checks.parametrize_with_checks`
with small settings. Image-level steps (a cohort table of image files in) cannot take the arrays those
checks feed; they run :func:`p53radiomics.utils.estimator_checks.check_image_estimator` in their own
test module, named in ``IMAGE_LEVEL`` below.
"""

import ast
import textwrap
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.utils.estimator_checks import parametrize_with_checks

from p53radiomics.feature_selection import CorrelationFilter, LassoSelector
from p53radiomics.fusion import StackingFusion
from p53radiomics.utils.discovery import all_estimators

# Numeric estimators with the small settings that keep the checks fast, and the expected failures
# of each with a specific reason: {name: (factory, {check_name: reason})}.
NUMERIC = {
    "CorrelationFilter": (lambda: CorrelationFilter(), {}),
    "LassoSelector": (lambda: LassoSelector(cv=3, Cs=5, random_state=0), {}),
    "StackingFusion": (
        lambda: StackingFusion([("linear", LogisticRegression()), ("bayes", GaussianNB())], cv=3),
        {},
    ),
}

# Image-level estimators -> the test module that runs check_image_estimator on them. With them
# ComBatHarmonizer: its input needs a batch column with at least 2 samples per batch beside the
# features, which the random arrays of parametrize_with_checks lack (each value would be a batch
# of one); its module runs check_image_estimator on tables with a scanner column, and its own
# clone, pickle, set_output, feature-name and not-fitted tests.
IMAGE_LEVEL = {
    "N4Resampler": "preprocessing/test_n4",
    "LargestSliceCropper": "preprocessing/test_slices",
    "RadiomicsExtractor": "radiomics/test_extractor",
    "ComBatHarmonizer": "harmonization/test_combat",
}

# Estimators neither kind of check can feed -> (test module, the class it tests, why).
OTHER = {
    "SkorchCNNFeaturizer": (
        "deep/test_featurizer",
        "SkorchCNNFeaturizer",
        "takes 4-D crops (two_d_array=False), for which parametrize_with_checks yields no check; the "
        "module runs the data-free checks and its own clone, pickle, not-fitted and seeding tests",
    ),
    "CNNNet": (
        "deep/test_featurizer",
        "SkorchCNNFeaturizer",
        "the skorch network inside SkorchCNNFeaturizer, tested through it",
    ),
}


def _numeric_instances():
    return [factory() for factory, _ in NUMERIC.values()]


def _expected_failures(estimator):
    return NUMERIC[type(estimator).__name__][1]


@parametrize_with_checks(_numeric_instances(), expected_failed_checks=_expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_every_estimator_is_checked():
    unchecked = [name for name, _ in all_estimators() if name not in NUMERIC | IMAGE_LEVEL | OTHER]
    assert not unchecked, (
        f"estimators without common checks: {unchecked}; add each to NUMERIC (scikit-learn's checks) "
        "or IMAGE_LEVEL (check_image_estimator, naming the test module) in tests/test_common.py"
    )


def _called_names(node):
    """The name a call's function goes by: ``f(...)`` and ``module.f(...)`` both give ``f``."""
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _checked_estimators(source, checker="check_image_estimator"):
    """Class names constructed as the first argument of a call to `checker` inside a test
    function of `source` (``checker(Name(...), ...)``), read from its syntax tree, so that a name
    in a comment, a string or an unrelated test does not count."""
    found = set()
    for test in ast.walk(ast.parse(source)):
        if not (isinstance(test, ast.FunctionDef) and test.name.startswith("test")):
            continue
        for node in ast.walk(test):
            if isinstance(node, ast.Call) and _called_names(node) == checker and node.args:
                first = node.args[0]
                if isinstance(first, ast.Call):
                    found.add(_called_names(first))
    return found


def _constructed_in_tests(source):
    """Class names called (constructed) inside the test functions of `source`."""
    return {
        _called_names(node)
        for test in ast.walk(ast.parse(source))
        if isinstance(test, ast.FunctionDef) and test.name.startswith("test")
        for node in ast.walk(test)
        if isinstance(node, ast.Call)
    }


def _source(module):
    return (Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("name, module", sorted(IMAGE_LEVEL.items()))
def test_image_level_estimators_are_checked_in_their_module(name, module):
    assert name in _checked_estimators(_source(module)), (
        f"{module}.py must run check_image_estimator({name}(...), ...) in a test"
    )


@pytest.mark.parametrize("name, entry", sorted(OTHER.items()))
def test_other_estimators_are_tested_in_their_module(name, entry):
    module, tested, _ = entry
    assert tested in _constructed_in_tests(_source(module)), (
        f"{module}.py must test {tested} ({name}) in a test function"
    )


def test_the_registry_checks_can_fail():
    """A class named only in a comment, a string or a helper is not counted as checked."""
    mentioned = textwrap.dedent(
        """
        # check_image_estimator(N4Resampler(), X) is run elsewhere
        NOTE = "check_image_estimator(N4Resampler"

        def _helper(X):
            check_image_estimator(N4Resampler(), X)

        def test_something(X):
            N4Resampler()
            check_image_estimator(LargestSliceCropper(size=8), X)
        """
    )
    assert _checked_estimators(mentioned) == {"LargestSliceCropper"}
    assert "N4Resampler" in _constructed_in_tests(mentioned)
    assert "RadiomicsExtractor" not in _constructed_in_tests(mentioned)
