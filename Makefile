# The README's first two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first (the CPU build on disk); otherwise pip resolves a CUDA build of several GB.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(BIN)/python -m pytest --doctest-modules src/saliency_r1 tests

demo: setup
	$(BIN)/saliency-r1 demo --out runs/demo

bench: setup
	$(BIN)/python benchmarks/saliency_overhead.py

clean:
	rm -rf runs .pytest_cache
