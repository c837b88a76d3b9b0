# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

# The try-out (SQLite, sandbox WeChat, random secrets) is an explicit choice:
# with no FENXIAO_CONFIG and no config.toml, these targets ask for it with
# FENXIAO_TRYOUT=1 and give it its own address, built from HOST and PORT
# (0.0.0.0 listens everywhere; links then use 127.0.0.1). Anything else the
# app is started with must name its configuration, or it stops.
TRYOUT := $(if $(FENXIAO_CONFIG)$(wildcard config.toml),,1)
BASE_URL ?= http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT)
APP_ENV := $(if $(TRYOUT),FENXIAO_TRYOUT=1 FENXIAO_APP_BASE_URL=$(BASE_URL))

.PHONY: run test coverage setup seed worker

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
	$(APP_ENV) $(BIN)/flask --app wsgi db upgrade

# The try-out starts with a small catalogue (only when none is configured).
seed: setup
	$(if $(TRYOUT),$(APP_ENV) $(BIN)/flask --app wsgi products seed)

# Set up, migrate and serve on the embedded defaults (or FENXIAO_CONFIG / config.toml).
# The try-out also has a demo owner for /admin (made once; its login is printed each time).
run: seed
	@echo ""
	@echo "  Fenxiao is starting on $(HOST):$(PORT)$(if $(TRYOUT), (the try-out: FENXIAO_TRYOUT=1))"
	@$(if $(TRYOUT),echo "  Try it without WeChat: open $(BASE_URL)/sandbox/ (the phone simulator)")
	@$(if $(TRYOUT),$(APP_ENV) $(BIN)/flask --app wsgi tryout owner)
	@echo "  Health: http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(PORT)/healthz    Stop: Ctrl-C"
	@echo ""
	$(APP_ENV) $(BIN)/gunicorn --workers 1 --worker-class gthread --threads 8 --bind $(HOST):$(PORT) \
		-c gunicorn.conf.py wsgi:app

worker: setup
	$(APP_ENV) $(BIN)/flask --app wsgi worker

# Set up and run the whole suite (PostgreSQL + Redis when FENXIAO_TEST_DATABASE_URL /
# FENXIAO_TEST_REDIS_URL are set, as .ci/run does; else SQLite + in-process Redis).
test: $(VENV)/.test-installed
	$(BIN)/pytest -n 2 --dist loadfile

# The same suite with line coverage of the product's packages (about twice as slow: coverage's tracer).
coverage: $(VENV)/.test-installed
	$(BIN)/pytest -n 2 --dist loadfile --cov=app --cov=wxbot --cov=h5 --cov=handlers --cov=models --cov=sandbox \
		--cov=admin --cov=pay --cov-report=term:skip-covered
