# The two set-up commands of the README: `make run` (embedded store) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
# The BigQuery emulator pins an older protobuf than the product: it lives in its own venv.
BQ_VENV ?= .venv-bq
BQ_PINS := bqemulator==1.4.0 duckdb==1.5.5 duckdb-extensions==1.5.5 \
	duckdb-extension-spatial==1.5.5 duckdb-extension-avro==1.5.5 \
	duckdb-extension-json==1.5.5 duckdb-extension-icu==1.5.5 numpy

.PHONY: run test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

# Installing the extensions from their wheels stops bqemulator downloading them at start-up.
$(BQ_VENV)/.installed-bq:
	$(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BQ_VENV)/bin/pip install --quiet $(BQ_PINS)
	$(BQ_VENV)/bin/python -c "import duckdb_extensions as d; [d.import_extension(e) for e in ['spatial', 'avro', 'json', 'icu']]"
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/dicomstore serve --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check shared functions tests $(wildcard bench)
	$(BIN)/ruff format --check shared functions tests $(wildcard bench)

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: $(VENV)/.installed-dev $(BQ_VENV)/.installed-bq lint typecheck
	DICOMSTORE_BQEMULATOR=$(CURDIR)/$(BQ_VENV)/bin/bqemulator $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
