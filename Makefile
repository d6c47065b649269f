# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,photos,server]'
	touch $(STAMP)

# The browser tests drive Debian's chromium (never a browser download); installed when missing.
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The whole stack on this machine, no configuration: SQLite + embedded Redis under ./var. Ctrl-C stops it.
run: install
	@echo "Sharpen: open http://$${SHARPEN_HOST:-127.0.0.1}:$${SHARPEN_PORT:-8000}/ once it is up (Ctrl-C stops it)"
	$(BIN)/sharpen up

test: install $(CHROMIUM)
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/speed.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
