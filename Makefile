# b2bua: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := b2bua twisted tests $(wildcard bench)

.PHONY: run test check lint typecheck unit man bench-micro bench clean

## make run: install into $(VENV) and run the daemon in the foreground on conf/lab.conf
run: $(VENV)/.installed
	exec $(BIN)/twistd -n --pidfile= b2bua --config conf/lab.conf

## make test: install everything the tests need, then lint, type-check and run every test
test: system-deps $(VENV)/.installed-test
	$(MAKE) --no-print-directory check

check: lint typecheck unit

lint:
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck:
	$(BIN)/mypy b2bua twisted/plugins tests

unit:
	$(BIN)/pytest -q -p no:cacheprovider

## make bench-micro: the pytest-benchmark microbenchmarks (parsers, codecs, timer wheel)
bench-micro: $(VENV)/.installed-test
	$(BIN)/pytest -q -p no:cacheprovider -m benchmark --benchmark-enable --benchmark-only

## make bench: capacity of charged calls (SIPp -> b2bua -> SIPp, lab OCS); BENCH_ARGS=--quick
BENCH_ARGS ?=
bench: system-deps $(VENV)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

system-deps:
	scripts/install-system-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(VENV)/.installed $@

man:
	groff -man -ww -z man/b2bua.8
	groff -man -ww -z man/b2bua.conf.5

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
