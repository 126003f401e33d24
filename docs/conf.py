"""Sphinx configuration of the p53radiomics documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``make docs``). The
gallery scripts in ``examples/`` are executed during the build (sphinx-gallery); add
``-D plot_gallery=0`` to build the pages without running them.
"""

import os
import re
from pathlib import Path

import p53radiomics

# The examples draw figures without a display, and train tiny CNNs: one torch thread each keeps
# them fast on a small or busy machine (several threads on such small tensors cost more in
# synchronisation than they gain; on a shared 2-core machine the gallery ran 3 times slower).
# torch reads the variable when it is first imported, which happens after this file is read.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")
DOCS = Path(__file__).resolve().parent

project = "p53radiomics"
author = "p53radiomics developers"
copyright = "p53radiomics developers"  # noqa: A001
version = release = p53radiomics.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb"]
root_doc = "index"
default_role = "literal"  # `x` in a docstring is a parameter name: typeset it as code
nitpicky = False  # references to scikit-learn, pandas, SimpleITK... resolve only with intersphinx
pygments_style = "sphinx"

# -- autodoc / autosummary / numpydoc -----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
autodoc_member_order = "bysource"
# numpydoc lists each class's methods itself (the template documents them with autodoc), and
# leaves out what scikit-learn's base classes bring (their docstrings link to scikit-learn's own
# user guide, which is not part of these pages).
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- sphinx-gallery -----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("p53radiomics",),
    "reference_url": {"p53radiomics": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
}

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"p53radiomics {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False


# -- hooks --------------------------------------------------------------------------------------
def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods scikit-learn generates for metadata routing.

    Their docstrings link to scikit-learn's own user guide and glossary, which these pages do not
    hold; they are documented there.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


# A shape written with a fitted attribute, ``ndarray of shape (n_features_in_,)``, would be read by
# docutils as a link to a target "n_features_in" in the type of a parameter or attribute.
_SHAPE_WORD = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*[A-Za-z0-9])_(?=[,)])")
_FIELD_LINE = re.compile(r"^\s*\*{0,2}[A-Za-z_][\w, ]* : ")


def _escape_attribute_shapes(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if _FIELD_LINE.match(line) and "(" in line:
            lines[i] = _SHAPE_WORD.sub(r"\1\\_", line)


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
    # before numpydoc (priority 500) turns the docstring into reST
    app.connect("autodoc-process-docstring", _escape_attribute_shapes, priority=400)
