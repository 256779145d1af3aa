# The front door. `make demo` runs the main job; `make test` passes the tests (starting the servers it needs).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := False
export MARKETKEEPER_HOME ?= $(CURDIR)/var

.PHONY: help venv test-tools services demo test test-fast lint format bench up up-celery clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "marketkeeper needs Python 3.11 (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || \
		{ echo "python venv failed: on Debian/Ubuntu run 'apt-get install python3.11-venv'"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

venv: $(STAMP) ## Create .venv with the pinned requirements and marketkeeper installed editable

test-tools: ## Install the real parts the tests drive when missing (pg_dump, redis-tools, chromium, prometheus)
	scripts/test-tools.sh

services: ## Make sure PostgreSQL, Redis and InfluxDB answer (starting what is missing)
	scripts/services.sh up

demo: $(STAMP) ## Run the main job with DATABASE_URL/INFLUXDB_URL/REDIS_URL, or embedded defaults
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/demo.sh

lint: $(STAMP) ## ruff (with the AIR3 rules), ruff format --check, mypy on include/ and plugins/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) test-tools services lint ## Lint, then the whole suite against the real servers
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

test-fast: $(STAMP) ## Unit tests only: no server needed
	$(BIN)/pytest tests/unit

bench: $(STAMP) services ## Benchmarks: ratios against a baseline measured in the same run
	@rc=0; for b in bench/[!_]*.py; do echo "== $$b"; PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python $$b || rc=1; done; exit $$rc

bench-scale: $(STAMP) services ## ohlcv_ingest with the real scheduler at 10, 100 and 500 markets (several minutes)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/scale.py --sizes 10,100,500 --single-upto 10

up: $(STAMP) ## Serve the Airflow UI (airflow standalone) on this project
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/airflow-init.sh >/dev/null
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/airflow.sh standalone

up-celery: $(STAMP) services ## The same under CeleryExecutor: Redis broker (DB 1), PostgreSQL metadata, 2 workers
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/airflow-celery.sh

clean: ## Remove the venv, local Airflow home and embedded stores (stops a locally started InfluxDB)
	-scripts/services.sh stop-influxdb
	rm -rf $(VENV) .airflow var .mypy_cache .ruff_cache .pytest_cache
