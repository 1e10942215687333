# inkq: `make up` runs the service, `make test` runs the whole suite.
# Both create the virtual environment in .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: up test install install-test install-bench bench loadtest eval train clean help

help:
	@echo "make up      - install and run the service (http://127.0.0.1:$(PORT))"
	@echo "make test    - install with test extras and run the whole suite"
	@echo "make bench   - run the benchmark suite"
	@echo "make loadtest - 60 s of concurrent clients (Locust) against a local stack"
	@echo "make train   - train the model on ../shared/emnist"
	@echo "make eval    - evaluate the committed model on the test set"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py $(wildcard worker/*.c) | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml setup.py $(wildcard worker/*.c) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml setup.py $(wildcard worker/*.c) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@ $(VENV)/.installed $(VENV)/.installed-test

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench

up: install
	$(BIN)/inkq up --port $(PORT)

test: install-test
	$(BIN)/python -m pytest

bench: install-bench
	$(BIN)/python -m bench

loadtest: install-bench
	$(BIN)/python -m bench.load --seconds 60

train: install
	$(BIN)/inkq train --data-dir ../shared/emnist

eval: install
	$(BIN)/inkq eval --data-dir ../shared/emnist

clean:
	rm -rf $(VENV) .inkq .pytest_cache worker/_fastpng.*.so
