# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,photos,server]'
	touch $(STAMP)

# The whole stack on this machine, no configuration: SQLite + embedded Redis under ./var. Ctrl-C stops it.
run: install
	$(BIN)/sharpen up

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/speed.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) var .pytest_cache
