# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test setup seed worker

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed
	$(BIN)/flask --app wsgi db upgrade

# The try-out starts with a small catalogue (only when none is configured).
seed: setup
	@if [ -z "$$FENXIAO_CONFIG" ] && [ ! -f config.toml ]; then $(BIN)/flask --app wsgi products seed; fi

# Set up, migrate and serve on the embedded defaults (or FENXIAO_CONFIG / config.toml).
run: seed
	@echo ""
	@echo "  Fenxiao is starting at http://$(HOST):$(PORT)/"
	@echo "  Try it without WeChat: open http://$(HOST):$(PORT)/sandbox/ (the phone simulator)"
	@echo "  Health: http://$(HOST):$(PORT)/healthz    Stop: Ctrl-C"
	@echo ""
	$(BIN)/gunicorn --workers 1 --worker-class gthread --threads 8 --bind $(HOST):$(PORT) \
		-c gunicorn.conf.py wsgi:app

worker: setup
	$(BIN)/flask --app wsgi worker

# Set up and run the whole suite (PostgreSQL + Redis when FENXIAO_TEST_DATABASE_URL /
# FENXIAO_TEST_REDIS_URL are set, as .ci/run does; else SQLite + in-process Redis).
test: $(VENV)/.test-installed
	$(BIN)/pytest
