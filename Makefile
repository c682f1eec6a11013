# Fresh machine: `make run` (the whole loop on the built-in data) or `make test`.
# Both create .venv and install the pinned lock files; nothing else is assumed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-unit install install-dev repro lint format benchmarks clean

run: install
	$(BIN)/mloop run

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -p no:randomly --durations=25

test-unit: install-dev
	$(BIN)/pytest -p no:randomly -m unit

repro: install
	$(BIN)/dvc repro

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "pip==26.3"
	$(PIP) install --quiet --no-deps -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(PIP) install --quiet --no-deps -r requirements-dev.lock
	touch $@

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf .mloop data/prepared models reports metrics.json dvc.lock  # never data/batches: new data
