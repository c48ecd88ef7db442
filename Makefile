# The two commands the README leads with: `make test` and `make demo`.
# torch==2.13.0 goes in first so pip takes the CPU build already on this machine instead of
# pulling gigabytes of CUDA wheels; everything else installs from pyproject.toml.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test demo install lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check tracesynth tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/tracesynth run recipes/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check tracesynth tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
