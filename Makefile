# leadscore — the commands the README names. Everything runs in a local virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo install test lint bench clean

demo: $(STAMP)            ## install, generate demo data, score it and print a summary
	$(BIN)/leadscore demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)            ## the whole test suite (starts its own PostgreSQL server)
	$(BIN)/python -m pytest

LINTED := leadscore tests $(wildcard bench)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy leadscore

bench: $(STAMP)           ## the batch benchmark (see docs/benchmarks.md)
	$(BIN)/python bench/batch.py

clean:
	rm -rf $(VENV) leadscore-demo .pytest_cache .mypy_cache .ruff_cache
