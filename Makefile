# Two commands on a fresh machine: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Until the job system lands: blur a few sample photos and sharpen them with the shipped model.
run: install
	$(BIN)/sharpen samples --out var/samples/blurred --sigma 2
	$(BIN)/sharpen enhance var/samples/blurred --out var/samples/sharpened
	@echo "blurred inputs: var/samples/blurred   sharpened: var/samples/sharpened"

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/speed.py

clean:
	rm -rf $(VENV) var .pytest_cache
