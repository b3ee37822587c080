# The two quick-start targets (see README): `make demo` and `make test`.
# Both install what a fresh Debian/Ubuntu machine lacks first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint format bench

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/bin/anc-agent simulate

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(VENV)/bin/anc-agent bench
