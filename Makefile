# The two commands of the README. Both create .venv and install on first use; a second run installs
# nothing (the stamp file is newer than pyproject.toml) and starts at once.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.p53radiomics-installed
DOCS_STAMP := $(VENV)/.p53radiomics-docs-installed
OUT ?= demo_output

.PHONY: demo test docs lint install clean-venv

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/p53radiomics demo --out $(OUT)

# The suite runs in TEST_WORKERS processes (pytest-xdist); a module whose tests share costly
# module-scoped fixtures is kept on one worker (its xdist_group mark, --dist loadgroup).
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25

$(DOCS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,docs]"
	touch $(DOCS_STAMP)

# The HTML docs (API reference, user guide, example gallery) in docs/_build/html; warnings are errors.
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

LINTED := p53radiomics tests benchmarks examples conftest.py

# ruff is pinned in pyproject.toml's dev extra: a newer ruff's rules must not fail a clean clone.
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

clean-venv:
	rm -rf $(VENV)
