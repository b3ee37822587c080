# The two quick-start targets (see README): `make demo` and `make test`.
# Both install what a fresh Debian/Ubuntu machine lacks first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo simulate test lint format bench

setup:
	./scripts/setup.sh

# The device agent (anc-agent run) on the simulated plant, provisioned by anc-provision and talking to the
# local Mosquitto and shadow service: live telemetry, a shadow change, an emergency pass-through, clean stop.
demo: setup
	$(VENV)/bin/anc-cloud local demo

# The controller alone on the simulated plant: a one-shot report of attenuation and timing.
simulate: setup
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
