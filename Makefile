# nanoPE: `make demo` runs the offline CPU sweep and draws its plot; `make test` runs the tests.
# Both create .venv on first use. TORCH picks the PyTorch wheel: the default is the CPU build;
# on a CUDA machine use e.g. `make TORCH=torch demo`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test lint format demo clean-demo

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest

demo: venv
	$(PY) data/prepare.py demo
	$(PY) scripts/sweep.py configs/sweeps/demo.py
	$(PY) scripts/plot.py out/sweeps/demo

clean-demo:
	rm -rf out/sweeps/demo
