# Guardline: one entry point for a fresh machine.
#   make demo   set everything up, run the receiver with simulated panels
#   make test   set everything up, run the whole test suite
# Both create .venv and install the project (editable) with its test extras.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv sysdeps demo test bench clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,web-test,postgres,bench]'
	# a DC-09 panel library for tests/test_dc09_peers.py; --no-deps: it names
	# PyCrypto, whose API the test gives it on pycryptodome
	$(BIN)/pip install -q --no-deps 'dc09-spt>=0.0.4'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests drive for real (socat for the serial pty,
# chromium for the console's browser tests, postgresql for scale-out).
# Installed only when missing, and only when we are root (CI is).
sysdeps:
	@bash scripts/sysdeps.sh

demo: venv sysdeps
	$(BIN)/python -m receiver.demo

# The suite runs in JOBS processes, a test file per process at a time (its
# module fixtures shared): most of its time is spent waiting on VMs, sockets,
# browsers and timers.  JOBS=0 runs it in this process.
JOBS ?= 4
test: venv sysdeps
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(JOBS) --dist loadfile $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
