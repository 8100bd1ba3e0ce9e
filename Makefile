# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test chaos bench load worker sim clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	DIALER_WEBHOOKS_ALLOW_INSECURE=true $(BIN)/dialer serve

worker: $(STAMP)
	$(BIN)/dialer worker

# The console's browser tests drive Debian's chromium (never a downloaded browser build).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

test: $(STAMP) $(CHROMIUM)
	DIALER_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

# The crash tests at length (make test runs them bounded: 20 kills, seed 1): kill -9 at seeded random
# moments of real traffic, then the invariants. CHAOS_SEED=N replays a run; CHAOS_KILLS, CHAOS_BIG
# (records of the first addCallsToBatch) set its size.
CHAOS_SEED ?= $(shell date +%s)
chaos: $(STAMP)
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_KILLS=$${CHAOS_KILLS:-60} CHAOS_BIG=$${CHAOS_BIG:-5000} \
		$(BIN)/python -m pytest -q -s tests/test_crash.py

LOAD_STAMP := $(VENV)/.load-installed
$(LOAD_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,load]'
	touch $(LOAD_STAMP)

load: $(LOAD_STAMP)
	$(BIN)/python -m bench.load

bench: $(STAMP)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.dispatch
	$(BIN)/python -m bench.enroll
	$(BIN)/python -m bench.store
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.compliance
	$(BIN)/python -m bench.dnc

# The deterministic simulation (docs/simulation.md): the real engine on a virtual clock with faults injected,
# every invariant checked after every step. SIM_SEED=N replays a run; SIM_CALLS sets its size.
SIM_SEED ?= $(shell date +%s)
SIM_CALLS ?= 1000000
sim: $(STAMP)
	$(BIN)/python -m sim --seed $(SIM_SEED) --calls $(SIM_CALLS)

clean:
	rm -rf $(VENV) *.egg-info  # the data in var/ is kept: remove it yourself
