# Two commands on a fresh machine: `make run` (the gateway) and `make test` (the tests).
# Debian's python3.11 when the machine has it: built with PGO and LTO, it runs the gateway's processes with
# 10-14 % less CPU a request than an unoptimised build of the same version (bench/results/interpreter-20261201.md).
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null && echo /usr/bin/python3.11 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench stop clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml sdk/js/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# llama-cpp-python (the local model server) compiles llama.cpp: about 5 minutes the first time.
	$(BIN)/pip install -q -e '.[dev,local-model]' -e sdk/python
	# The JavaScript SDK's build tools (TypeScript); its tests install the packed tarball like a user.
	cd sdk/js && npm ci --no-audit --no-fund --loglevel=error
	# The dashboard test drives Debian's chromium through Playwright (Playwright's own download is not used).
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $(STAMP)

run: $(STAMP)  ## the whole local stack: Kafka, topics, local model (when no provider key is set), router, ingress
	$(BIN)/gateway up

test: $(STAMP)  ## lint, then every test against a real Kafka broker
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP)  ## added latency and throughput versus the mock upstream called directly
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.streaming

stop:  ## stop the local Kafka broker
	$(BIN)/gateway kafka stop

clean: stop
	rm -rf .gateway $(VENV)
