# gridflow: `make run` serves the embedded default, `make test` runs every check.
# Both create .venv and install what they need on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck layers unit unit-sqlite unit-postgres demo clean

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

unit: unit-sqlite unit-postgres

unit-sqlite: $(STAMP)
	$(BIN)/pytest

# The same suite on a throwaway PostgreSQL (installed from Debian's packages if missing).
unit-postgres: $(STAMP)
	deploy/local/with-postgres.sh $(BIN)/pytest

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
