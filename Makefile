# gridflow: `make run` serves the embedded default, `make test` runs every check.
# Both create .venv and install what they need on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck layers unit unit-embedded unit-services demo clean

run: $(STAMP)
	$(BIN)/gridflow serve

test: lint typecheck layers unit

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

unit: unit-embedded unit-services

# The suite on the embedded default: SQLite and the in-process bus.
unit-embedded: $(STAMP)
	$(BIN)/pytest --durations=15 --ignore=tests/faults --ignore=tests/services

# The same suite, plus the fault tests, on a throwaway PostgreSQL (Debian's package, installed
# if missing) and a single-node Kafka (jars resolved by Maven, cached).
unit-services: $(STAMP)
	deploy/local/with-services.sh $(BIN)/pytest --durations=15

demo: $(STAMP)
	$(BIN)/gridflow demo

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gridflow needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
