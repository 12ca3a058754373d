# homelab-ai — entry points. The README's quickstart is two commands:
#   make lab    bring the whole stack up on this machine (podman containers, no GPU)
#   make test   run every test layer (router, inventory, emulators, Molecule, lab end-to-end)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PYTHON    ?= python3
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH            := $(CURDIR)/$(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/molecule/_shared/containers.conf
export ANSIBLE_CONFIG  := $(CURDIR)/ansible.cfg
PYTEST_ARGS ?=

# System packages the tests and the lab need (Debian/Ubuntu names).
APT_PACKAGES := podman runc debootstrap uidmap slirp4netns fuse-overlayfs iproute2 jq \
                build-essential cmake ninja-build git curl python3-venv ca-certificates wrk \
                chromium chromium-driver libnss3-tools mosquitto

.PHONY: help deps venv image image-debian image-noble test test-fast lint bench bench-catalog bench-hub lab lab-down

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install missing system packages (apt)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: system packages present"; fi

$(VENV)/.installed: pyproject.toml
	@echo "venv: installing Python dependencies into $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q -U pip setuptools wheel
	@$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## create the virtualenv with the router and the dev tools

image: image-debian image-noble ## build the podman systemd test images (cached)

image-debian: deps ## build the Debian 12 systemd test image (cached)
	@molecule/_shared/build-image.sh

image-noble: deps ## build the Ubuntu 24.04 systemd test image for the GPU nodes (cached)
	@HOMELAB_IMAGE_SUITE=noble molecule/_shared/build-image.sh

# Two pytest-xdist workers: the lab and the Molecule scenarios mostly wait on containers, so two
# streams fit a 2-core machine (tests/conftest.py orders the long units first).
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadgroup --durations=25

test: deps venv image ## run every test layer
	@$(VENV)/bin/python -m pytest tests $(XDIST) $(PYTEST_ARGS)

test-fast: venv ## unit and API-level tests only (no containers, no browser)
	@$(VENV)/bin/python -m pytest tests -m "not molecule and not lab and not browser" $(XDIST) $(PYTEST_ARGS)

lint: venv ## yamllint + ansible-lint
	@$(VENV)/bin/yamllint -s .
	@$(VENV)/bin/ansible-lint --profile production

bench: venv ## router overhead benchmark (direct vs through the router)
	@$(VENV)/bin/python bench/bench_router.py

bench-catalog: venv ## model-catalog benchmark (placement 50x200, cold-model overhead, single flight)
	@$(VENV)/bin/python bench/bench_catalog.py

bench-hub: venv ## control-plane benchmark (200 simulated agents every 5 s: hub CPU, command latency)
	@$(VENV)/bin/python bench/bench_hub.py

-include Makefile.lab
