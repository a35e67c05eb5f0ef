# fleetflow: the two commands that matter are `make up` (the main job) and `make test` (the suite).
# Everything they need is installed first: the Debian packages each needs (apt-get as root, sudo
# otherwise; fleetflow/testbed/packages.py lists them and why), a virtualenv pinned by
# constraints.txt, and the test bed's Kubernetes, etcd and kwok binaries built from the upstream
# Go modules into a cache outside the repository ($FLEETFLOW_TESTBED_CACHE, default
# ~/.cache/fleetflow/testbed).

PYTHON ?= python3
# The suite's workers: with more than one, each is a test session of its own (a test bed and a
# Prefect server), files dealt out whole, so a module's federation and its tests' order stay on
# one worker. On 2 cores the suite took 16 min 23 s with two workers, 27 min with one (plain
# pytest, files in their order: WORKERS=1). Dealing the longest files first was tried and the
# suite took 108 s longer (the order only chose which heavy files overlapped). Two workers leave
# the cores a fifth idle (waits on clocks: leases, health windows, HPAs); three kept them 86%
# busy and took 901 and 904 s in two runs where two had taken 1050 s the same day, but 1285 s in
# a clean-clone CI run an hour later, with a test starved by the load: two until three hold there.
# With the test bed's idle cost cut by a third, two took 979 s and three 1064 s, the cores 98%
# busy: the suite is bound by the two cores.
WORKERS ?= 2
XDIST = $(if $(filter-out 1,$(WORKERS)),-n $(WORKERS) --dist loadfile)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test unit integration lint install testbed bench clean packages-up packages-test

up: packages-up install testbed  ## start the Prefect server, a worker and the test bed
	$(BIN)/fleetflow up

down: install  ## stop everything `make up` started
	$(BIN)/fleetflow down

test: packages-test install testbed lint  ## the whole suite: lint, unit and integration tests
	$(BIN)/pytest $(XDIST)

unit: install  ## the fast tier: pure code, no servers
	$(BIN)/pytest tests/unit

integration: packages-test install testbed  ## real clusters and a real Prefect server
	$(BIN)/pytest $(XDIST) tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

install: $(STAMP)

# The system's python3, before the virtualenv exists: the module needs only the standard library.
packages-up packages-test:
	@$(PYTHON) -m fleetflow.testbed.packages $(@:packages-%=%)

$(STAMP): pyproject.toml constraints.txt
	@command -v go >/dev/null || { echo "Go 1.26+ is needed to build the test bed: install it first" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# uv installs the same pinned set as pip, in 7 s instead of 49 (every clean clone's CI run).
	$(BIN)/pip install --quiet -c constraints.txt uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[test]'
	touch $(STAMP)

testbed: install  ## build the test-bed binaries (cached: a second run does nothing)
	$(BIN)/fleetflow testbed build

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
