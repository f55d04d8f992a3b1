# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up, generate the demo dataset, run participant + group, print where outputs are
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
DEMO_ARGS ?= --subjects 2 --sessions 2 --seed 11
TOOLS := .tools
# The official BIDS validator (npm), installed into the project, not globally.
VALIDATOR_VERSION := 1.15.0

# The container image (docker or podman, whichever is on PATH; README.md, section Containers).
ENGINE ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
TAG ?= csvd-bids/csvd-bids:$(shell cat version)
BASE_IMAGE ?= python:3.11-slim-bookworm
TORCH_VARIANT ?= cpu
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
PIP_INDEX_URL ?= https://pypi.org/simple
BUILD_ARGS ?=

.PHONY: install tools demo test lint clean image image-test base-image lock

$(BIN)/csvd-bids: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch drags in gigabytes of CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/csvd-bids

tools:
	@if command -v npm >/dev/null 2>&1; then \
	  [ -x $(TOOLS)/node_modules/.bin/bids-validator ] || \
	  npm install --silent --no-fund --no-audit --prefix $(TOOLS) bids-validator@$(VALIDATOR_VERSION); \
	else echo "npm not found: the BIDS validator tests will be skipped"; fi

demo: install tools
	rm -rf $(DEMO)
	$(BIN)/python -m csvd_bids.synth $(DEMO)/bids $(DEMO_ARGS)
	PATH=$(CURDIR)/$(TOOLS)/node_modules/.bin:$$PATH $(BIN)/csvd-bids $(DEMO)/bids $(DEMO)/derivatives participant -w $(DEMO)/work
	$(BIN)/csvd-bids $(DEMO)/bids $(DEMO)/derivatives group
	@echo
	@echo "Demo dataset:    $(CURDIR)/$(DEMO)/bids (truth in derivatives/groundtruth)"
	@echo "Outputs:         $(CURDIR)/$(DEMO)/derivatives"
	@echo "Group table:     $(CURDIR)/$(DEMO)/derivatives/group_csvd.tsv"
	@echo "Reports:         $(CURDIR)/$(DEMO)/derivatives/*.html (group_csvd.html, one per session)"

test: install tools
	# the layering contracts of pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports
	# three workers on two cores: the suite waits on subprocesses and SLURM jobs much of the
	# time (13.5 vs 15.4-18 min measured on the 2-core CI machine)
	PATH=$(CURDIR)/$(TOOLS)/node_modules/.bin:$$PATH $(BIN)/python -m pytest -n 3 --dist loadgroup -q tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(DEMO) .pytest_cache

# Builds the image; e.g. make image BASE_IMAGE=localhost/csvd-bids-base:bookworm
# buildah does not rerun a RUN whose bind-mounted files changed (Dockerfile): these digests do.
LOCK_DIGEST = $(shell sha256sum container/requirements-$(TORCH_VARIANT).lock | cut -c1-16)
SOURCE_DIGEST = $(shell (git ls-files -co --exclude-standard -z | xargs -0 sha256sum 2>/dev/null \
	|| date +%s) | sha256sum | cut -c1-16)

image:
	$(ENGINE) build -t $(TAG) -f Dockerfile \
	  --build-arg LOCK_DIGEST=$(LOCK_DIGEST) --build-arg SOURCE_DIGEST=$(SOURCE_DIGEST) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg TORCH_VARIANT=$(TORCH_VARIANT) \
	  --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) --build-arg PIP_INDEX_URL=$(PIP_INDEX_URL) \
	  $(BUILD_ARGS) .

# Runs the image read-only, non-root, without a tmpfs on /tmp, on a small demo dataset (minutes;
# not part of make test); builds it first (same variables as make image) when it is missing.
image-test:
	$(ENGINE) image inspect $(TAG) >/dev/null 2>&1 || $(MAKE) image
	ENGINE=$(ENGINE) sh container/image-test.sh $(TAG)

# A Debian bookworm base from Debian packages only (mmdebstrap), for sites without Docker Hub.
base-image:
	ENGINE=$(ENGINE) sh container/make-base.sh

# Regenerates the hashed lock files the image installs from (pip-tools; see README.md).
lock:
	sh container/lock.sh
