# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint format bench gpu-check

setup:
	@bash scripts/setup.sh

## The main job on the embedded default.
demo: setup
	$(BIN)/bench demo --out runs/demo

## The whole test suite (CI runs exactly this, slow end-to-end tests included).
test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## Side-by-side ratio benchmarks (not tests): prints every ratio with its spread and writes
## runs/benchmarks/<time>/report.{md,json}; about 10 minutes on 2 cores.
bench: setup
	$(BIN)/python -m benchmarks

## Every GPU path on this machine's GPU (about 8 minutes): runs/gpu-check/<time>/report.{md,json};
## exits 2 with one line where there is no CUDA, 1 when a check failed.
gpu-check:
	@bash scripts/gpu_check.sh
