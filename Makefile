# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# Both install the exact versions CI runs (constraints.txt); pyproject.toml holds the supported ranges.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
# what `make test-fast` leaves out: the heavy kinds of test (docs/development.md)
FAST := not slow and not subprocess and not torchrun and not kernel and not browser and not wheel

$(BIN)/basam: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, at its constrained version, so pip takes the local CPU wheel rather than a CUDA build
	$(PIP) torch
	$(PIP) -e .
	touch $(BIN)/basam

# the test extra (the official segment-anything, transformers, onnxruntime, the page's server, Playwright,
# build) and ruff
$(VENV)/.test-deps: $(BIN)/basam
	$(PIP) -e '.[test,dev]'
	# the official HQ-SAM code (version in constraints.txt), without the torchvision it declares
	# (tests/official_hq.py stands in for it)
	$(PIP) --no-deps segment-anything-hq
	# the official SAM 2 (Meta's code at 2b90b9f; version in constraints.txt): without its CUDA
	# extension and without its torchvision requirement (tests/official_sam2.py stands in for it)
	SAM2_BUILD_CUDA=0 $(PIP) --no-deps --no-build-isolation sam2
	touch $(VENV)/.test-deps

.PHONY: demo test test-fast lint
demo: $(BIN)/basam
	$(BIN)/basam demo

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m "$(FAST)"
