# stream-cd: `make demo` and `make test` are the two commands a newcomer needs.
# Needs Python 3.11+, and for the Kafka broker Java 17+ and Maven (first start only).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STREAM_CD := $(VENV)/bin/stream-cd
STAMP := $(VENV)/.installed-stamp

KAFKA_DIR ?= .stream-cd/kafka
KAFKA_PORT ?= 9092
TEST_KAFKA_DIR := .stream-cd/kafka-test
PYTEST_ARGS ?=

.PHONY: help install test demo kafka-up kafka-down kafka-status clean

help:
	@echo "make demo        create .venv if needed and run the demo job (no broker needed)"
	@echo "make test        create .venv if needed, start a Kafka broker, run all tests, stop it"
	@echo "make kafka-up    start a local Kafka broker on 127.0.0.1:\$$KAFKA_PORT (default 9092)"
	@echo "make kafka-down  stop it"

$(PY):
	@test -n "$(PYTHON)" || { echo "error: python3.11 (or python3) not found; install Python 3.11+" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

install: $(STAMP)

# Start a broker unless STREAM_CD_KAFKA_BOOTSTRAP names one, run pytest requiring Kafka,
# and stop the broker we started whether the tests pass or fail.
test: $(STAMP)
	@if [ -n "$$STREAM_CD_KAFKA_BOOTSTRAP" ]; then \
	  echo "using the Kafka broker at $$STREAM_CD_KAFKA_BOOTSTRAP"; \
	  STREAM_CD_REQUIRE_KAFKA=1 $(PY) -m pytest $(PYTEST_ARGS); \
	else \
	  $(STREAM_CD) kafka down --dir $(TEST_KAFKA_DIR) >/dev/null 2>&1 || true; \
	  port=$$($(PY) -c 'from stream_cd.broker.config import free_port; print(free_port())'); \
	  out=$$($(STREAM_CD) kafka up --dir $(TEST_KAFKA_DIR) --port $$port) || exit $$?; \
	  bootstrap=$$(printf '%s\n' "$$out" | tail -n 1); \
	  trap '$(STREAM_CD) kafka down --dir $(TEST_KAFKA_DIR)' EXIT; \
	  trap 'exit 130' INT TERM; \
	  STREAM_CD_REQUIRE_KAFKA=1 STREAM_CD_KAFKA_BOOTSTRAP=$$bootstrap $(PY) -m pytest $(PYTEST_ARGS); \
	fi

demo: $(STAMP)
	@mkdir -p .stream-cd
	$(STREAM_CD) generate agrawal --n 30000 --seed 7 --drift-at 15000 > .stream-cd/demo.jsonl
	$(STREAM_CD) replay .stream-cd/demo.jsonl --model logreg --shadow hoeffding-tree

kafka-up: $(STAMP)
	$(STREAM_CD) kafka up --dir $(KAFKA_DIR) --port $(KAFKA_PORT)

kafka-down: $(STAMP)
	$(STREAM_CD) kafka down --dir $(KAFKA_DIR)

kafka-status: $(STAMP)
	@$(STREAM_CD) kafka status --dir $(KAFKA_DIR)

clean:
	rm -rf build dist *.egg-info .pytest_cache
