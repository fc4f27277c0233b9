# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/basam: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so pip takes the local CPU wheel rather than a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $(BIN)/basam

# the test extra: the official segment-anything, transformers, onnxruntime, the page's server and Playwright
$(VENV)/.test-deps: $(BIN)/basam
	$(BIN)/pip install -q -e '.[test]'
	# the official HQ-SAM code, without the torchvision it declares (tests/official_hq.py stands in for it)
	$(BIN)/pip install -q --no-deps segment-anything-hq==0.3
	touch $(VENV)/.test-deps

.PHONY: demo test
demo: $(BIN)/basam
	$(BIN)/basam demo

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest
