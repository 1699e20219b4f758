# simdev: everything a developer or CI runs goes through these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VBIN := $(VENV)/bin
CLUSTER := cluster
# Scripts run this kubectl: the local build's once it exists, else the one on PATH (a kind
# cluster needs no local build). KUBECONFIG chooses the cluster.
export KUBECTL ?= $(shell bash -c '. $(CLUSTER)/lib/common.sh; [ -x "$$BIN/kubectl" ] && echo "$$BIN/kubectl" || echo kubectl')

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

## ---- set-up -------------------------------------------------------------
.PHONY: setup deps venv
setup: deps venv ## Install everything: Debian packages, Python venv, Kubernetes binaries (fetching Go if needed)
# build-k8s.sh takes its go from cluster/go-toolchain.sh: the one on PATH when new enough,
# else the official toolchain, fetched once into the cache for this build only.
	@bash $(CLUSTER)/build-k8s.sh >/dev/null

deps: ## Debian packages (containerd, runc, CNI plugins, etcd, buildah, ...)
	@bash $(CLUSTER)/install-deps.sh

venv: $(VBIN)/.installed ## Python venv with the project and its dev tools
# The stamp is checked too: a venv whose python or pip broke is made again.
$(VBIN)/.installed: pyproject.toml $(shell test -x $(VBIN)/python && $(VBIN)/python -c 'import pip' 2>/dev/null || echo FORCE)
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/venv.sh
	@touch $@

.PHONY: FORCE
FORCE:

## ---- checks -------------------------------------------------------------
.PHONY: test lint typecheck unit
test: setup lint ## Lint, type-check and run every test, the cluster ones included (what CI runs)
	$(VBIN)/pytest

unit: venv ## Only the tests that need no cluster
	$(VBIN)/pytest -m 'not e2e'

lint: venv typecheck ## ruff and mypy
	$(VBIN)/ruff check .
	$(VBIN)/ruff format --check .

# plugin/ and operator/ are the packages simdev.plugin and simdev.operator: mypy
# sees them through a symlinked tree with the installed names.
typecheck: venv
	@mkdir -p build/typecheck/simdev
	@ln -sfn ../../../plugin build/typecheck/simdev/plugin
	@ln -sfn ../../../operator build/typecheck/simdev/operator
	cd build/typecheck && MYPYPATH=. ../../$(VBIN)/mypy --config-file ../../pyproject.toml -p simdev.plugin -p simdev.operator
	MYPYPATH=build/typecheck:tests:bench $(VBIN)/mypy --explicit-package-bases tests bench scripts

.PHONY: bench
bench: venv ## Benchmarks; figures go to bench-results/ (the live one deploys to the local cluster)
	$(VBIN)/python bench/listandwatch_size.py
	$(VBIN)/python bench/plugin_allocate.py
	$(VBIN)/python bench/peer_allocate.py
	@bash scripts/deploy.sh
	PYTHONPATH=tests $(VBIN)/python bench/live_latency.py

# The scale benchmark's fake nodes; afterwards the local cluster goes back to the fake nodes
# it had before.
SCALE_NODES ?= 500
.PHONY: bench-scale
bench-scale: venv ## Scale on the local cluster: 500 fake nodes, 10 SimulatedDevices, 2,000 pods (bench-results/scale.json)
	@before=$$(bash $(CLUSTER)/kwok.sh count); bash $(CLUSTER)/kwok.sh up $(SCALE_NODES) && \
	  bash scripts/deploy.sh && \
	  export KUBECONFIG=$$(bash -c '. $(CLUSTER)/lib/common.sh; echo $$ADMIN_KUBECONFIG') && \
	  $(VBIN)/python bench/scale.py; status=$$?; \
	  bash $(CLUSTER)/kwok.sh up $$before; exit $$status

.PHONY: proto
proto: venv ## Regenerate the device-plugin API code from plugin/api/*.proto
	@PATH=$(abspath $(VBIN)):$$PATH bash scripts/gen-proto.sh

.PHONY: chart
chart: venv ## Regenerate charts/simdev/templates from manifests/base (the one source)
	@$(VBIN)/python scripts/gen_chart.py

## ---- local cluster --------------------------------------------------------
.PHONY: cluster-up cluster-down cluster-clean cluster-kubeconfig cluster-kubectl
cluster-up: deps ## Start (building what is missing) the local cluster; idempotent; NODES=N real nodes, KWOK_NODES=N fake ones
	@NODES=$(NODES) KWOK_NODES=$(KWOK_NODES) bash $(CLUSTER)/up.sh

cluster-down: ## Stop every process of the local cluster; keep its state
	@bash $(CLUSTER)/down.sh

cluster-clean: ## Stop the cluster and delete its state (binaries stay cached)
	@bash $(CLUSTER)/clean.sh

cluster-kubeconfig: ## Print the path of the local cluster's admin kubeconfig
	@bash -c '. $(CLUSTER)/lib/common.sh; echo $$ADMIN_KUBECONFIG'

cluster-kubectl: ## Print the path of the kubectl that matches the cluster
	@bash -c '. $(CLUSTER)/lib/common.sh; echo $$BIN/kubectl'

.PHONY: helm
helm: ## Print the path of helm (built from the Go module proxy the first time, then cached)
	@bash $(CLUSTER)/build-helm.sh

## ---- images -------------------------------------------------------------
.PHONY: images cluster-load-images
images: ## Build the operator and plugin images (buildah here; docker or podman when present)
	@bash $(CLUSTER)/images.sh build

cluster-load-images: ## Import the built images into the local cluster's containerd
	@bash $(CLUSTER)/images.sh load-local

## ---- kind (for machines with Docker) --------------------------------------
.PHONY: kind-up kind-down kind-load-images
kind-up: ## Create a kind cluster named simdev (needs Docker and kind)
	@bash $(CLUSTER)/kind.sh up

kind-down: ## Delete the kind cluster
	@bash $(CLUSTER)/kind.sh down

kind-load-images: ## Load the built images into the kind cluster
	@bash $(CLUSTER)/images.sh load-kind

## ---- operator -------------------------------------------------------------
.PHONY: deploy undeploy demo
deploy: ## Build and load the images, then install the CRD and the operator (honours KUBECONFIG)
	@bash scripts/deploy.sh

undeploy: ## Delete every SimulatedDevice, wait for cleanup, remove the operator and the CRD
	@bash scripts/undeploy.sh

demo: setup ## Local cluster + operator + a sample SimulatedDevice + a consumer pod
	@bash scripts/demo.sh
