# Two commands for a fresh clone: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lab bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "analytics-kit needs Python 3.11+"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## start the embedded demo API, load it into analytics.duckdb, show what landed
	$(BIN)/analytics-kit demo

test: $(STAMP)  ## unit, integration and notebook (nbval) tests; PostgreSQL for the warehouse tests
	@scripts/ensure-postgres
	$(BIN)/python -m pytest

lab: $(STAMP)  ## JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)  ## loader benchmark (see README)
	$(BIN)/python bench/load_speed.py

clean:
	rm -rf $(VENV) analytics.duckdb analytics.duckdb.wal analytics.duckdb.state
