# Two commands on a fresh machine: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export DAGSTER_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo test bench ui lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/driftgate demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile

# Speed and memory figures, as ratios to a floor measured in the same run (several minutes:
# the largest drift scenario profiles 10M + 10M rows; telemetry ingests 1M events per format).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.drift
	$(BIN)/python -m benchmarks.telemetry

ui: $(STAMP)
	$(BIN)/driftgate ui

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .driftgate .pytest_cache
