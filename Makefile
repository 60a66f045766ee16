# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint fmt install clean gpu-check

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/actionmoe demo --out runs/demo

test: lint  # ends with the 30 slowest tests, so every CI log says where the time goes
	$(BIN)/python -m pytest -q --durations=30

test-fast: lint  # skips the tests marked slow (subprocesses, torchrun, the browser, torch.compile)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)  # what lint checks, applied: safe fixes (import order, unused imports), then formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every CUDA code path once, figures in runs/gpu-check/gpu_check.json; says so and exits 0 without a GPU.
# Uses the venv when there is one, else the machine's python3 (a bare GPU image), from the source tree.
gpu-check:
	PYTHONPATH=src $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) scripts/gpu_check.py

clean:
	rm -rf $(VENV) runs .pytest_cache
