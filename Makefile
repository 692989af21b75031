# leadscore — the commands the README names. Everything runs in a local virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo install test lint bench clean lock test-lowest

demo: $(STAMP)            ## install, generate demo data, score it and print a summary
	$(BIN)/leadscore demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark,dbt]' -c requirements-dev.lock
	touch $(STAMP)

lock: $(STAMP)            ## pin every dependency's version for make install (requirements-dev.lock)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --extra dbt --python-version 3.11 --quiet \
	  --custom-compile-command 'make lock' -o requirements-dev.lock

# the lowest versions pyproject.toml allows, in a venv of their own, on a fast subset of the tests
# (without the spark and dbt extras, whose tests need the full install)
LOWEST_VENV ?= .venv-lowest
FAST_TESTS  := tests/test_model.py tests/test_engine.py tests/test_cli.py tests/test_service_api.py \
               tests/test_service_layers.py tests/test_service_extras.py
test-lowest: $(STAMP)     ## the fast tests on the lowest allowed versions of every direct dependency
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet \
	  --resolution lowest-direct --no-header -o $(LOWEST_VENV).txt
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(BIN)/uv pip install --quiet --python $(LOWEST_VENV)/bin/python -r $(LOWEST_VENV).txt
	$(BIN)/uv pip install --quiet --python $(LOWEST_VENV)/bin/python --no-deps -e .
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(FAST_TESTS)

test: $(STAMP)            ## the whole test suite (starts its own PostgreSQL server)
	$(BIN)/python -m pytest

LINTED := leadscore tests $(wildcard bench)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy leadscore
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)           ## the batch benchmark (see docs/benchmarks.md)
	$(BIN)/python bench/batch.py

clean:
	rm -rf $(VENV) .venv-lowest .venv-lowest.txt leadscore-demo .pytest_cache .mypy_cache .ruff_cache
