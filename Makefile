# The README's commands. Each one creates .venv and installs the project when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test bench demo gpu-check install clean

install: $(STAMP)

$(STAMP): pyproject.toml tests/workers/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,gui]'
	$(PY) -m pip install --quiet -e tests/workers
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench

demo: $(STAMP)
	$(PY) scripts/demo.py

# The GPU check (docs/WORKERS.md): exits 3 where there is no NVIDIA GPU.
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
