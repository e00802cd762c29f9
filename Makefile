# Every target installs what it needs itself: a virtualenv from the pinned requirement files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1
# Two workers (this machine has 2 cores); one file per worker keeps module-scoped synths single.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: help install browser test lint format demo sandbox synth bench preflight deploy-local clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## create .venv from the pinned requirements

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The browser tests drive Debian's Chromium (CHROMIUM=/path overrides); as root (CI) it is installed here.
browser: ## make sure Chromium is there for the browser tests (apt-get install as root)
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "make test needs Chromium for the browser tests: run 'sudo apt-get install chromium' (or set CHROMIUM=/path/to/chromium)" >&2; \
	  exit 1; \
	fi

test: $(STAMP) lint browser ## the whole suite (what CI runs)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP) ## run the end-to-end scenario on the embedded local system
	$(BIN)/python -m sandbox.demo

sandbox: $(STAMP) ## keep the embedded system serving on 127.0.0.1:8080 (gateway) and :8090 (simulator)
	$(BIN)/python -m sandbox.serve

synth: $(STAMP) ## synthesize CloudFormation into cdk.out/ with cdk-nag and cfn-lint
	$(BIN)/python -m infra.synth

bench: $(STAMP) ## print the benchmark tables
	$(BIN)/python -m bench

# Context for preflight as for cdk: make preflight CONTEXT="-c stage=prod -c lwaClientId=amzn1.…"
CONTEXT ?=
preflight: $(STAMP) ## read-only check of the AWS account and this machine before cdk deploy
	$(BIN)/python -m infra.preflight $(CONTEXT)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

deploy-local: $(STAMP) node_modules/.installed ## the real CDK CLI bootstraps, deploys and destroys the stack on a local moto server
	$(BIN)/python -m infra.deploy_local

clean: ## remove the virtualenv and generated files
	rm -rf $(VENV) cdk.out .pytest_cache .ruff_cache .hypothesis node_modules
