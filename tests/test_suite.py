"""The suite's own machinery: under ``make test`` (pytest-xdist, ``--dist loadgroup``) a module's
``xdist_group`` mark keeps its tests on one worker, so that its costly module and session fixtures
(a fitted model, a small study) run once instead of once per worker."""

import pytest

pytestmark = pytest.mark.xdist_group("suite")


def test_the_xdist_groups_are_applied(request):
    # pytest-xdist runs grouped tests together by appending "@group" to their ids; when it and
    # pytest disagree on where an id lives (pytest 9.2 with pytest-xdist 3.8), the groups are
    # dropped without a word, every test still passes and the suite takes about twice as long
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("checks a pytest-xdist session with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@suite"), (
        f"--dist loadgroup ignored this test's xdist_group mark ({request.node.nodeid}): this "
        "pytest-xdist does not work with this pytest; install the versions that pyproject.toml's "
        "dev extra pins"
    )
