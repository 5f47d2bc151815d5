# The README's commands. Each one creates .venv and installs the project when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The test suite's workers (tests/workers, entry-point group trainer.test_workers, run
# only with TRAINER_TEST_WORKERS=1): installed for make test, bench and gpu-check only.
TEST_STAMP := $(VENV)/.test-workers-stamp

.PHONY: test lint bench demo gpu-check install clean

install: $(STAMP)

# A venv made before the test workers had their own group still holds them in
# trainer.workers: they are removed (and installed again by the targets that need them).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,gui]'
	$(PY) -m pip uninstall --quiet --yes trainer-test-workers
	rm -f $(TEST_STAMP)
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) tests/workers/pyproject.toml
	$(PY) -m pip install --quiet -e tests/workers
	touch $(TEST_STAMP)

# The layers (import-linter contracts in pyproject.toml), ruff, and mypy on core, bus and
# runtime; `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Four pytest-xdist workers (most tests wait on real processes, so four share two cores
# well); a module's tests stay on one worker, with its module-scoped stack.
test: lint $(TEST_STAMP)
	$(PY) -m pytest -n 4 --dist loadscope

bench: $(TEST_STAMP)
	$(PY) -m bench

demo: $(STAMP)
	$(PY) scripts/demo.py

# The GPU check (docs/WORKERS.md): exits 3 where there is no NVIDIA GPU.
gpu-check: $(TEST_STAMP)
	$(PY) scripts/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache \
		.import_linter_cache
