# `make run` and `make test` each work on a fresh machine with only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint reliability bench-registry bench-ui screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(PIP) install -r requirements.txt -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

run: $(RUNTIME_STAMP)
	$(BIN)/deploystudio seed-demo --if-empty
	@echo "Deploy Studio: open http://localhost:8501 in your browser"
	$(BIN)/streamlit run studio.py --server.port 8501

# Two processes (pytest-xdist, a test file per process at a time): most tests wait on servers,
# browsers and subprocesses, so two share two cores well. The secret scan must read the logs of
# every other test, so it runs afterwards in its own session over the first one's folders.
TEST_WORKERS ?= 2

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	@base=$$(mktemp -d); status=0; \
	RELIABILITY_FIGURES=$$base/figures.json $(BIN)/python -m pytest -n $(TEST_WORKERS) \
		--dist loadfile --basetemp=$$base/run -p no:cacheprovider \
		--ignore=tests/reliability/test_secret_scan.py --durations=20 $(PYTEST_ARGS) || status=$$?; \
	RELIABILITY_FIGURES=$$base/figures.json SECRET_SCAN_ROOT=$$base/run \
		$(BIN)/python -m pytest tests/reliability/test_secret_scan.py -p no:cacheprovider -q \
		|| status=$$?; \
	rm -rf $$base; exit $$status

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

# The reliability suites with the long case counts; the last output is the figures table.
reliability: $(DEV_STAMP)
	@figures=$$(mktemp); status=0; \
	RELIABILITY_LONG=1 RELIABILITY_FIGURES=$$figures \
		$(BIN)/python -m pytest tests/reliability -p no:cacheprovider -q || status=$$?; \
	echo; echo "Reliability figures (RELIABILITY_LONG=1):"; \
	$(BIN)/python -m tests.reliability.figures $$figures; rm -f $$figures; exit $$status

bench-registry: $(RUNTIME_STAMP)
	$(BIN)/python bench/registry.py

# Chromium against the app and MLflow's own UI on one 2,000-model registry (about 5 minutes).
bench-ui: $(DEV_STAMP)
	$(BIN)/python bench/ui.py

# The README's screenshots, from the running app on a fresh demo data folder.
screenshots: $(DEV_STAMP)
	$(BIN)/python bench/screenshots.py

clean:
	rm -rf $(VENV)
