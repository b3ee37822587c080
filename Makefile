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

# Every benchmark in sequence, each printing its figures (about 12 min on 2 cores): kernels against C and
# padasip (anc-agent bench); the callback through real PortAudio on ALSA's null PCM and agent CPU per
# profile; the emergency detector's rates (20 min of negative audio instead of 60); bulk provisioning
# (300 devices instead of 1000); 200 sync-only agents through a 60 s network cut; the real daemon through
# a 60 s broker stop, with 50 config round trips.
BENCH_DIR := bench-out
bench: setup
	$(VENV)/bin/anc-agent bench
	mkdir -p $(BENCH_DIR)
	printf 'pcm.!default {\n    type null\n}\nctl.!default {\n    type hw\n    card 0\n}\n' > $(BENCH_DIR)/asound-null.conf
	ALSA_CONFIG_PATH=$(BENCH_DIR)/asound-null.conf $(PY) -m agent.service.bench
	$(PY) -m agent.control.safety_bench --minutes 20
	$(PY) -m provisioning.bench_bulk --devices 300
	$(PY) -m agent.sync.loadtest --agents 200 --duration-s 90 --outage-s 60
	$(PY) -m agent.sync.outage_bench --outage-s 60
