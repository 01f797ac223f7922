# vaebook — the two commands: `make book` and `make test`.
# Both create/refresh the local virtual environment first (idempotent: pip runs only
# when pyproject.toml changed) and never pull CUDA wheels on a CPU-only machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin VAEBOOK_DATA), undefined)
  ifneq ($(wildcard $(SHARED_DATA)/MNIST),)
    export VAEBOOK_DATA := $(SHARED_DATA)
  endif
endif
PRESET ?= medium
DEVICE ?= auto

.PHONY: venv test test-lib test-notebooks book reproduce benchmark clean

venv: $(STAMP)

# torch is pinned to the local CPU wheel (2.13.0); installing it in the same pip call as
# torchvision/pytorch-fid keeps pip from resolving an unpinned (CUDA) torch.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e ".[book,test]"
	@$(BIN)/python tools/check_no_cuda.py
	@touch $@

test: $(STAMP)
	@$(BIN)/python tools/check_no_cuda.py
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-notebooks

# Every notebook at preset=smoke in compute mode, then the book from those outputs into a
# temporary folder; any cell error or Sphinx warning fails the target.
test-notebooks: $(STAMP)
	@set -euo pipefail; tmp=$$(mktemp -d); \
	$(BIN)/python -m vaebook.lab.run_all --preset smoke --mode compute \
	    --results-dir $$tmp/results --executed-dir $$tmp/executed --device cpu && \
	$(BIN)/python -m vaebook.lab.build_book --executed-dir $$tmp/executed \
	    --results-dir $$tmp/results --out $$tmp/site && echo "notebooks+book OK ($$tmp)"

# The site from committed results: notebooks run in report mode (no training).
book: $(STAMP)
	$(BIN)/python -m vaebook.lab.build_book --out _build

reproduce: $(STAMP)
	$(BIN)/python -m vaebook.lab.run_all --preset $(PRESET) --mode compute \
	    --results-dir results --device $(DEVICE)
	$(MAKE) --no-print-directory book

benchmark: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py

clean:
	rm -rf _build
