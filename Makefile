# Every README command is a target here. VENV can point elsewhere (CI uses a fresh one).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test lint bench real-faces clean

# torch is installed first and pinned so that pip never replaces it with a CUDA build;
# on a GPU machine install the torch build you want first, then `pip install -e .`.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job on the built-in data: build the glyph set, train configs/demo.yaml on the
# CPU, evaluate on unseen identities. PASSIVE stops idle OpenMP threads spinning on small CPUs.
demo: install
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/sphereface2 demo

test: install
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: install
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/head_speed.py
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/train_speed.py
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/sharded_head.py
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/partial_fc.py
	$(PY) benchmarks/data_loader.py

# The loss comparison and label-noise study on real faces (../shared/data/cfp_dev; about
# 4 minutes per cell on 2 CPU cores, two cells at once; finished cells are kept and skipped).
real-faces: install
	$(PY) benchmarks/real_faces.py

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info
