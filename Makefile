# Everything a fresh machine needs, from the project's own files: every target
# runs in the project's virtual environment (.venv), made here when missing, so
# a dependency the project forgets to declare fails everywhere, CI included.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODELS ?= models
PORT ?= 8000

.PHONY: install install-test chromium serve demo-model models serve-all test lint bench clean

# A stamp per extra, remade when the project's dependencies change.
$(VENV)/.stamp-%: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$*]'
	touch $@

install: $(VENV)/.stamp-examples

install-test: $(VENV)/.stamp-test

# Debian's chromium for the status page's browser test, installed only when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

chromium: $(CHROMIUM)

$(MODELS)/demo.yaml:
	$(PY) -m examples.demo --out $(MODELS)

demo-model: install $(MODELS)/demo.yaml

serve: demo-model
	$(PY) -m autodep.serve --config $(MODELS)/demo.yaml --port $(PORT)

models: install
	$(PY) -m examples.build --out $(MODELS)

serve-all: models
	$(PY) -m autodep.serve --config $(MODELS)/models.yaml --port $(PORT)

test: install-test chromium
	$(PY) -m pytest

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check autodep tests examples bench research
	$(VENV)/bin/ruff format --check autodep tests examples bench research
	$(VENV)/bin/mypy

bench: install-test
	$(PY) -m bench.transport
	$(PY) -m bench.startup
	$(PY) -m bench.latency
	$(PY) -m bench.throughput

clean:
	rm -rf $(MODELS) .cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
