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
# checkov pins an old hcl2 that clashes with python-hcl2 (a dev dependency): its own venv too.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_PIN  := checkov==3.3.30

.PHONY: run test lint typecheck unit clean infra-check firestore-indexes function-source bench run-cloud

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

$(CHECKOV_VENV)/.installed-checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet $(CHECKOV_PIN)
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/dicomstore serve --port $(PORT)

# The three functions on the emulators, wired by push as on Google Cloud (Ctrl-C stops all).
run-cloud: $(VENV)/.installed-dev
	$(BIN)/dicomstore run-cloud --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check shared functions tests infra/terraform/scripts $(wildcard bench)
	$(BIN)/ruff format --check shared functions tests infra/terraform/scripts $(wildcard bench)

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: $(VENV)/.installed-dev $(BQ_VENV)/.installed-bq $(CHECKOV_VENV)/.installed-checkov lint typecheck
	DICOMSTORE_BQEMULATOR=$(CURDIR)/$(BQ_VENV)/bin/bqemulator \
	DICOMSTORE_CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov \
	$(BIN)/python -m pytest -q

# Side by side with Orthanc (installs orthanc + orthanc-dicomweb with apt when missing).
# BENCH_ARGS=--quick for the small corpus, --profile to py-spy the store afterwards.
bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet psutil py-spy
	$(BIN)/python -m bench.run $(BENCH_ARGS)

infra-check: $(VENV)/.installed-dev $(CHECKOV_VENV)/.installed-checkov
	DICOMSTORE_CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest -q tests/infra

firestore-indexes: $(VENV)/.installed-dev
	$(BIN)/python infra/terraform/scripts/gen_firestore_indexes.py

function-source:
	infra/terraform/scripts/stage_function_source.sh build/function-source

clean:
	rm -rf $(VENV) $(BQ_VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
