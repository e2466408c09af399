# cosign_signer: two commands matter. `make demo` signs and verifies an image end to end;
# `make test` provisions the real tools and runs every check (lint, types, unit, integration).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all test demo lint typecheck unit integration provision provision-rekor venv bench clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

provision:
	bash scripts/provision.sh

provision-rekor:
	bash scripts/provision-rekor.sh

lint: venv
	$(VENV)/bin/ruff check cosign_signer tests bench examples scripts

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -m "not integration" -q

test: venv provision provision-rekor lint typecheck
	$(PY) -m pytest -q

demo: venv provision
	$(PY) scripts/demo.py

bench: venv provision
	$(PY) bench/bench_batch.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
