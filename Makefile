# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint format bench

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

## Side-by-side ratio benchmarks (not tests); they print their figures.
bench: setup
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_density.py
	$(BIN)/python benchmarks/bench_seg.py
