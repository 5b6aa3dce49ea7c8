# `make run` and `make test` each work on a fresh machine with only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint reliability bench-registry clean

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
	$(BIN)/streamlit run app.py --server.port 8501

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

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

clean:
	rm -rf $(VENV)
