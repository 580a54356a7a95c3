# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# the test suite's extra on top of setup: MLflow (about 40 packages that `make run` never needs)
TEST_STAMP := $(VENV)/.test-stamp
ARGS ?=
WORKERS ?= auto  # pytest-xdist processes: one per core
# longest first (tests/durations.json), so both workers finish together; the tests that share a
# module's fixture as one unit (tests/conftest.py), in the order given
XDIST = -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: setup run test test-unit test-durations test-notebooks nbval-refresh lint lab clean-runs

setup: $(STAMP)

# uv installs what pip would, in parallel: a fresh clone's test setup took 41 s here with uv's
# cache empty, against 123 s for pip's first install alone. Bytecode is compiled at install, as
# pip does: with PYTHONDONTWRITEBYTECODE set, each kernel would otherwise compile TensorFlow's
# sources again (importing Keras took 16 s instead of 8).
UV := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.5,<1"

$(STAMP): pyproject.toml $(BIN)/uv
	$(UV) -e ".[dev]"
	@touch $(STAMP)

# The suite's environment in one install, setup's included: uv compiles the whole environment's
# bytecode after every install, so setup and then the extra took 28 s here against 20 s in one.
$(TEST_STAMP): pyproject.toml $(BIN)/uv
	$(UV) -e ".[dev,mlflow]"
	@touch $(STAMP) $(TEST_STAMP)

run: setup  ## the whole chain on the bundled dataset (ARGS="-p epochs 20" to change it)
	$(BIN)/roicast run $(ARGS)

test: $(TEST_STAMP)  ## lint, then every test: unit, fits, notebooks under papermill, nbval
	$(BIN)/ruff check lib tests benchmarks scripts notebooks
	$(BIN)/pytest $(XDIST)

test-unit: setup  ## the quick loop: no fit, no kernel
	$(BIN)/pytest $(XDIST) -m "not notebooks and not slow"

test-durations: $(TEST_STAMP)  ## every test, then record its seconds in tests/durations.json (the order they run in)
	$(BIN)/pytest $(XDIST) --record-durations

test-notebooks: $(TEST_STAMP)
	$(BIN)/pytest $(XDIST) -m "notebooks"

lint: setup
	$(BIN)/ruff check lib tests benchmarks scripts notebooks

nbval-refresh: setup  ## store new outputs in the cells nbval checks (after changing what they print)
	$(BIN)/python scripts/refresh_nbval_outputs.py

lab: setup  ## JupyterLab on the notebooks (installs it on first use)
	$(UV) -e ".[lab]"
	$(BIN)/jupyter lab notebooks

clean-runs:
	rm -rf data/runs reports/*/ reports/index.html
