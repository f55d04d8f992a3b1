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

.PHONY: install tools demo test lint clean

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
	PATH=$(CURDIR)/$(TOOLS)/node_modules/.bin:$$PATH $(BIN)/python -m pytest -n 2 --dist loadgroup -q tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(DEMO) .pytest_cache
