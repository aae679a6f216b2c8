# Two commands for a fresh clone: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The oldest supported dlt, duckdb, numpy, pandas, pyarrow and sqlglot (constraints-oldest.txt),
# for the core tests only: no notebooks, so no Jupyter in this venv.
OLDEST := .venv-oldest
OLDEST_STAMP := $(OLDEST)/.installed
# The adversary's cases that found version differences (files held by two loads, a full disk)
# run there too; its other cases are about the kit's own code and would add 2.5 min to make test.
#
# Two workers, each taking whole test files (their module fixtures stay per worker): the
# suites wait on servers, subprocesses and kernels as much as they compute, so on 2 cores
# the main suite took 4.4 min instead of 8-10.
PARALLEL := -n 2 --dist loadfile
CORE_TESTS := tests/test_config.py tests/test_source.py tests/test_load.py tests/test_faults.py \
	tests/test_fast.py tests/test_bad_configs.py tests/test_fidelity.py
TEST_OLDEST := $(OLDEST)/bin/python -m pytest -p no:nbval -o addopts=-ra $(PARALLEL) $(CORE_TESTS) \
	tests/test_adversary.py -k "not test_adversary or two_loads or disk"

.PHONY: demo test test-oldest lab bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "analytics-kit needs Python 3.11+"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

$(OLDEST_STAMP): pyproject.toml constraints-oldest.txt
	@test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -c constraints-oldest.txt -e . pytest pytest-xdist
	@touch $(OLDEST_STAMP)

demo: $(STAMP)  ## start the embedded demo API, load it into analytics.duckdb, show what landed
	$(BIN)/analytics-kit demo

test: $(STAMP) $(OLDEST_STAMP)  ## unit, integration and notebook (nbval) tests; PostgreSQL for the warehouse tests; then test-oldest's
	@scripts/ensure-postgres
	$(BIN)/python -m pytest $(PARALLEL)
	$(TEST_OLDEST)

test-oldest: $(OLDEST_STAMP)  ## the core tests against the oldest supported versions (constraints-oldest.txt)
	$(TEST_OLDEST)

# As root (common in containers) Jupyter refuses to start without --allow-root. ARGS passes
# flags on (make lab ARGS="--port 9999 --no-browser"). ANALYTICS_DATABASE (unless set) points the
# notebooks' ak.tables() / ak.query() defaults at ./analytics.duckdb, where `make demo` writes.
lab: $(STAMP)  ## JupyterLab on the notebooks; flags through ARGS="..."
	ANALYTICS_DATABASE="$${ANALYTICS_DATABASE:-$(CURDIR)/analytics.duckdb}" \
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/ $(ARGS)

bench: $(STAMP)  ## loader benchmark (see README)
	$(BIN)/python bench/load_speed.py

clean:
	rm -rf $(VENV) $(OLDEST) analytics.duckdb analytics.duckdb.wal analytics.duckdb.state
