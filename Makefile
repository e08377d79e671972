# dku_ray: Ray on Kubernetes from Dataiku DSS.  `make help` lists the targets.
# Every target installs what it needs: Debian packages (when root), a Python 3.11 virtualenv,
# and the Go-built local Kubernetes control plane (cached in ~/.cache/dku-ray/testenv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PLUGIN_ID := $(shell $(PYTHON) -c "import json;print(json.load(open('plugin.json'))['id'])" 2>/dev/null || echo ray-cluster)
PLUGIN_VERSION := $(shell $(PYTHON) -c "import json;print(json.load(open('plugin.json'))['version'])" 2>/dev/null || echo 0)
APT_PACKAGES := chromium openssl curl

.PHONY: help setup demo test test-fast bench plugin clean
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) testenv-binaries  ## install everything (Debian packages, virtualenv, Go-built control plane)

$(STAMP): code-env/python/spec/requirements.txt requirements-dev.txt
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "[setup] apt-get install $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@echo "[setup] pip install (first time: about 2 minutes)"
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -m pip install -q -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import ray, xgboost, kubernetes, dataikuapi, moto" && touch $(STAMP)

testenv-binaries:
	@bash testenv/build.sh

demo: setup  ## the main job on an embedded default: local control plane, Ray cluster, training
	@$(PY) demo/run_demo.py

test: setup  ## all the tests (real control plane, KubeRay operator, Ray, moto, DSS stand-in)
	@$(PY) -m pytest

test-fast: setup  ## unit tests only (no control plane, no Ray jobs)
	@$(PY) -m pytest tests/cluster/test_values.py tests/cluster/test_quantity.py

bench: setup  ## the benchmarks (JSON with medians and ratios on stdout)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

plugin:  ## build dist/dss-plugin-<id>-<version>.zip for DSS (without tests, demo, benchmarks)
	@mkdir -p dist && rm -f dist/dss-plugin-$(PLUGIN_ID)-$(PLUGIN_VERSION).zip
	@git archive --format zip -o dist/dss-plugin-$(PLUGIN_ID)-$(PLUGIN_VERSION).zip HEAD \
	  plugin.json python-runnables python-lib resource code-env README.md
	@echo "dist/dss-plugin-$(PLUGIN_ID)-$(PLUGIN_VERSION).zip"

clean:  ## remove the virtualenv and build outputs (not the ~/.cache control-plane binaries)
	rm -rf $(VENV) dist .pytest_cache
