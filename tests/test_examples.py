"""The documentation's gallery runs, and its API reference names every public name.

Each ``examples/plot_*.py`` script runs as ``__main__`` from an empty working folder, with
matplotlib's Agg backend, as sphinx-gallery runs it: in this process (a fresh one per script would
spend seconds importing torch and PyRadiomics again); it must run to its end and write nothing into
its working folder or into ``examples/``. They take about two minutes together on a 2-core CPU (the
scripts use tiny settings); set ``P53RADIOMICS_SKIP_EXAMPLES=1`` to skip them.
"""

import ast
import importlib
import os
import pkgutil
import re
import runpy
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("plot_*.py"))

skip_examples = pytest.mark.skipif(
    os.environ.get("P53RADIOMICS_SKIP_EXAMPLES", "") not in ("", "0"),
    reason="P53RADIOMICS_SKIP_EXAMPLES is set",
)


def test_the_gallery_has_the_examples_the_docs_promise():
    names = {path.stem for path in EXAMPLES}
    assert len(names) >= 4, names
    for topic in ("paper_pipeline", "grid_search", "external_validation", "grad_cam"):
        assert any(topic in name for name in names), f"no example about {topic}: {sorted(names)}"
    for path in EXAMPLES:
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring and docstring.splitlines()[0].startswith("="), (
            f"{path.name} needs a module docstring with an over- and underlined title "
            "(sphinx-gallery's convention)"
        )
    assert (REPO / "examples" / "README.txt").is_file()


@skip_examples
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(script, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    before = sorted(p.name for p in (REPO / "examples").iterdir())
    start = time.perf_counter()
    try:
        runpy.run_path(str(script), run_name="__main__")
    except Exception as error:
        raise AssertionError(
            f"{script.name} failed after {time.perf_counter() - start:.0f} s: {error!r}"
        ) from error
    finally:
        plt.close("all")
    assert list(workdir.iterdir()) == [], f"{script.name} wrote into its working folder"
    assert sorted(p.name for p in (REPO / "examples").iterdir()) == before, (
        f"{script.name} wrote into examples/"
    )


def _public_modules():
    import p53radiomics

    yield p53radiomics
    for info in pkgutil.walk_packages(p53radiomics.__path__, prefix="p53radiomics."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        yield importlib.import_module(info.name)


def _resolve(dotted):
    """The object a dotted name refers to, importing the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


def _documented_names():
    """Full names of the objects docs/api.rst documents (autosummary entries, ``.. data::``)."""
    module = "p53radiomics"
    names = []
    for line in (REPO / "docs" / "api.rst").read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\.\. (?:py:)?currentmodule:: (\S+)", line):
            module = match.group(1)
        elif match := re.match(r"\.\. (?:py:)?data:: (\S+)", line):
            names.append(f"{module}.{match.group(1)}")
        elif match := re.fullmatch(r" {3}~?([A-Za-z_][\w.]*)", line):
            names.append(f"{module}.{match.group(1)}")
    return names


def test_the_api_reference_documents_every_public_name():
    """Every name in the ``__all__`` of a public module is documented in docs/api.rst (under
    that module or another one that exports the same object)."""
    documented = {id(_resolve(name)) for name in _documented_names()}
    missing = [
        f"{module.__name__}.{name}"
        for module in _public_modules()
        for name in getattr(module, "__all__", ())
        if not name.startswith("__") and id(getattr(module, name)) not in documented
    ]
    assert not missing, f"add these to docs/api.rst: {missing}"
