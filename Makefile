# hpa-kit: `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST := .venv/bin/pytest
PROVIDER ?= $(HPA_KIT_PROVIDER)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install system packages (as root) and the Python environment
	@bash scripts/bootstrap.sh

setup-cluster: ## setup + upstream binaries for the local cluster (cached)
	@bash scripts/bootstrap.sh --cluster

EXAMPLE ?= 1

test: setup-cluster ## Run every test this machine can run (unit, integration, e2e, examples/my-app; EXAMPLE=0 skips it)
	@bash scripts/run-tests.sh tests/unit tests/integration tests/e2e $(PYTEST_ARGS); rc=$$?; \
	  if [[ "$(EXAMPLE)" == 1 ]]; then HPA_KIT_FAIL_ON_SKIP=1 bash examples/my-app/run.sh -p no:cacheprovider \
	    || { erc=$$?; if [[ $$rc == 0 ]]; then rc=$$erc; fi; }; fi; \
	  exit $$rc

example: setup-cluster ## examples/my-app: its own project, the kit installed as a package, its own scaling test
	@bash examples/my-app/run.sh $(PYTEST_ARGS)

unit: setup ## Unit tests only
	@bash scripts/run-tests.sh tests/unit $(PYTEST_ARGS)

integration: setup-cluster ## Integration tests (real Prometheus, mockmetrics, kube-apiserver)
	@bash scripts/run-tests.sh tests/integration $(PYTEST_ARGS)

e2e: setup-cluster ## End-to-end scenarios on the best available provider (kind, else local); report in reports/
	@$(if $(filter kind,$(PROVIDER)),bash scripts/docker-engine.sh start &&) \
	  bash scripts/run-tests.sh tests/e2e $(if $(PROVIDER),--hpa-kit-provider=$(PROVIDER)) $(PYTEST_ARGS)

engine: ## Start a Docker engine for the kind provider (installs docker.io; iptables off; see the script)
	@bash scripts/docker-engine.sh start

engine-stop: ## Stop the Docker engine `make engine` started (never another one)
	@bash scripts/docker-engine.sh stop

certs: setup ## Generate the adapter's CA, serving cert, Secret and caBundle into build/certs
	@bash scripts/gen-certs.sh serving --service custom-metrics-apiserver --namespace custom-metrics --out build/certs

binaries: ## Build the upstream Kubernetes binaries into ~/.cache/hpa-kit
	@bash scripts/build-binaries.sh

images: setup-cluster ## Build the kit's container images offline (base root-fs, component images)
	@bash scripts/build-images.sh build

cluster-up: setup-cluster ## Start a local cluster (or kind where Docker works)
	@$(if $(filter kind,$(PROVIDER)),bash scripts/docker-engine.sh start &&) \
	  $(PY) -m harness up $(if $(PROVIDER),--provider=$(PROVIDER))

cluster-down: ## Stop the cluster (keeps its state for a warm start)
	@$(PY) -m harness down

reset: setup ## Delete every cluster and all cluster state (images in containerd too); build caches stay
	@bash scripts/reset-state.sh

lint: setup ## ruff
	@.venv/bin/ruff check adapter mockmetrics harness bench tests examples
	@.venv/bin/pytest -q -p no:cacheprovider tests/unit/test_adapter_layers.py

type: setup ## mypy
	@.venv/bin/mypy adapter mockmetrics harness bench

clean: ## Remove build outputs, reports and caches in the repo (not ~/.cache/hpa-kit)
	rm -rf build reports .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help setup setup-cluster test example unit integration e2e engine engine-stop certs binaries images cluster-up cluster-down reset lint type clean
