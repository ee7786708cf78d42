# Everything a fresh machine needs, from the project's own files.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
MODELS ?= models
PORT ?= 8000

.PHONY: install install-test serve demo-model models test lint bench clean

install:
	$(PIP) install -q -e '.[examples]'

install-test:
	$(PIP) install -q -e '.[test]'

$(MODELS)/resnet18.pt:
	$(PYTHON) -m examples.demo --out $(MODELS)

demo-model: install $(MODELS)/resnet18.pt

serve: demo-model
	$(PYTHON) -m autodep.serve --model $(MODELS)/resnet18.pt --port $(PORT)

models: install
	$(PYTHON) -m examples.build --out $(MODELS)

serve-all: models
	$(PYTHON) -m autodep.serve --config $(MODELS)/models.yaml --port $(PORT)

test: install-test
	$(PYTHON) -m pytest

lint:
	ruff check autodep tests examples bench
	ruff format --check autodep tests examples bench
	mypy

bench: install-test
	$(PYTHON) -m bench.transport
	$(PYTHON) -m bench.startup
	$(PYTHON) -m bench.latency
	$(PYTHON) -m bench.throughput

clean:
	rm -rf $(MODELS) .cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
