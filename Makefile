# nanoPE: `make demo` runs the offline CPU sweep and draws its plot; `make test` runs the tests.
# Both create .venv on first use, installing PyTorch first (TORCH, from TORCH_INDEX if set) so
# that the requirements do not pull another build. On Linux, PyPI's torch wheel is the large CUDA
# build; for a CPU-only machine: `make TORCH_INDEX=https://download.pytorch.org/whl/cpu test`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test lint format demo demo-seeds demo-field demo-time analyze clean-demo

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# -n auto: one worker per core (pytest-xdist); most tests use one thread each
test: lint
	$(PY) -m pytest -n auto

# the plots are drawn even if a run failed; make still reports the sweep's failure afterwards
demo: venv
	$(PY) data/prepare.py demo
	$(PY) scripts/sweep.py configs/sweeps/demo.py; status=$$?; \
		$(PY) scripts/plot.py out/sweeps/demo && exit $$status

# the demo with three seeds (same out_dir: seed 1337 from make demo is reused):
# the tables and plots the README and docs/results.md quote, as mean +- std
demo-seeds: venv
	$(PY) data/prepare.py demo
	$(PY) scripts/sweep.py configs/sweeps/demo.py --seeds=1337,1338,1339; status=$$?; \
		$(PY) scripts/plot.py out/sweeps/demo && exit $$status

# the per-head analysis of the demo models (scripts/analyze.py, docs/analysis.md; ~80 s per seed)
analyze: venv
	$(PY) scripts/analyze.py out/sweeps/demo

# the encodings beyond the mission's seven, next to four references (configs/sweeps/demo_field.py)
demo-field: venv
	$(PY) data/prepare.py demo
	$(PY) scripts/sweep.py configs/sweeps/demo_field.py; status=$$?; \
		$(PY) scripts/plot.py out/sweeps/demo_field && exit $$status

# time from the data: learned clocks, FoX, randomized positions (configs/sweeps/demo_time.py)
demo-time: venv
	$(PY) data/prepare.py demo
	$(PY) scripts/sweep.py configs/sweeps/demo_time.py; status=$$?; \
		$(PY) scripts/plot.py out/sweeps/demo_time && exit $$status

clean-demo:
	rm -rf out/sweeps/demo out/sweeps/demo_field out/sweeps/demo_time
