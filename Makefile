# Two entry points that work on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates the virtual environment on first use, with the full install (the export extra: what makes
# artifacts). `make device-venv` builds the torch-free install the remote tests use as a device.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rtk-installed

.PHONY: demo test bench bench-scale install device-venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[export,dev,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rtk demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

device-venv: $(STAMP)
	$(BIN)/python tests/rig.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.run --scale

clean:
	rm -rf runs .pytest_cache
