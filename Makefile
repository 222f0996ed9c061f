# The two commands of the README. Both set up a fresh machine first (idempotent).
VENV ?= .venv
export DEEPLIMIT_DATA_DIR ?= $(CURDIR)/data-cache

.PHONY: setup test reproduce lint bench docs
setup:
	bash scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider -n 2 --dist loadfile

reproduce: setup
	$(VENV)/bin/deeplimit reproduce --out runs/reproduce

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: setup
	$(VENV)/bin/python -m benchmarks --all

docs: setup
	$(VENV)/bin/python scripts/apidoc.py
	$(VENV)/bin/python scripts/bench_docs.py
