# Tongban: every target sets up its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test lint format proto openapi bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

## demo: start the hub on embedded SQLite with simulated departments and walk through it
demo: $(STAMP)
	$(VENV)/bin/tongban demo

## test: the whole suite (SQLite always; PostgreSQL too when TONGBAN_TEST_DATABASE_URL is set)
test: $(STAMP)
	$(PY) -m pytest

## lint: ruff (lint + format check), mypy strict, import contracts (lint-imports), buf lint, generated code up to date
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	cd proto && ../$(VENV)/bin/buf lint
	$(PY) proto/generate.py --check

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## proto: regenerate exchange/generated from proto/
proto: $(STAMP)
	$(PY) proto/generate.py

## openapi: regenerate docs/openapi.json from the route table and the proto descriptors
openapi: $(STAMP)
	$(PY) -m exchange.http.openapi

## bench: benchmarks, each a ratio against a baseline measured in the same run
bench: $(STAMP)
	@command -v h2load >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq nghttp2-client) || echo "h2load unavailable: its benchmarks skip"
	$(PY) -m bench

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache .hypothesis
