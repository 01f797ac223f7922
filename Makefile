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
SITE ?= _build/html
CHROMIUM_PKG ?= chromium-headless-shell

.PHONY: venv test test-lib test-notebooks book reproduce benchmark campaign clean site-check chromium page

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
# temporary folder, then every page of it in headless Chromium; any cell error, Sphinx warning or
# site-check problem (broken link or image, JavaScript error, clipped verdict column, "n/a" template,
# machine path) fails the target. The temporary folder goes on exit (the smoke models alone are ~2 GB: the
# CelebA-HQ nets of Appendix I.3 are full size even at smoke); after a failure its executed notebooks stay.
test-notebooks: $(STAMP) chromium
	@set -euo pipefail; tmp=$$(mktemp -d); \
	trap 'rm -rf "$$tmp/results"; [ -f "$$tmp/ok" ] && rm -rf "$$tmp" || echo "kept for inspection: $$tmp/executed"' EXIT; \
	$(BIN)/python -m vaebook.lab.run_all --preset smoke --mode compute \
	    --results-dir $$tmp/results --executed-dir $$tmp/executed --device cpu && \
	$(BIN)/python -m vaebook.lab.build_book --executed-dir $$tmp/executed \
	    --results-dir $$tmp/results --out $$tmp/site && \
	$(BIN)/python -m vaebook.lab.site_check $$tmp/site/html && touch $$tmp/ok && echo "notebooks+book+site OK (its temporary folder, named above, is removed)"

# Every page of a built site (SITE, default _build/html from `make book`) in headless Chromium.
site-check: $(STAMP) chromium
	$(BIN)/python -m vaebook.lab.site_check $(SITE)

# A headless Chromium for site-check: $$CHROMIUM, or one on PATH, else Debian's package (apt-get, as root).
chromium:
	@if [ -n "$${CHROMIUM:-}" ] || command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null \
	    || command -v google-chrome >/dev/null; then exit 0; fi; \
	echo "installing $(CHROMIUM_PKG) with apt-get (for make site-check)"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(CHROMIUM_PKG); } \
	    >/dev/null || { echo "could not install $(CHROMIUM_PKG): install it, or set CHROMIUM=/path/to/chromium" >&2; \
	    exit 1; }

# One page at a time (vaebook/lab/one_page.py): run experiment NAME at PRESET (default here: smoke), execute its
# notebook, build the book into _build/page-NAME/site and check only that page, e.g. `make page NAME=lowrank`.
page: $(STAMP) chromium
	@test -n "$(NAME)" || { echo "usage: make page NAME=<experiment> [PRESET=smoke] [DEVICE=auto]" >&2; exit 2; }
	$(BIN)/python -m vaebook.lab.one_page $(NAME) \
	    --preset $(if $(filter command line environment,$(origin PRESET)),$(PRESET),smoke) --device $(DEVICE)

# The site from committed results: notebooks run in report mode (no training).
book: $(STAMP)
	$(BIN)/python -m vaebook.lab.build_book --out _build

reproduce: $(STAMP)
	$(BIN)/python -m vaebook.lab.run_all --preset $(PRESET) --mode compute \
	    --results-dir results --device $(DEVICE)
	$(MAKE) --no-print-directory book

benchmark: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py

# The MNIST parts of the book at the paper's scale in one resumable command (vaebook/campaign.py): Tables 1, E.8,
# 3, 4, 5 and 7 on MNIST, into results/$(PRESET)/. It prints its plan and FLOP-based time estimate first; run it
# again to resume. Defaults here: DEVICE=cuda PRESET=full; CAMPAIGN_ARGS="--dry-run" prints only the estimate,
# CAMPAIGN_ARGS="--only nll" runs one step.
campaign: $(STAMP)
	$(BIN)/python -m vaebook.campaign --device $(if $(filter command line environment,$(origin DEVICE)),$(DEVICE),cuda) \
	    --preset $(if $(filter command line environment,$(origin PRESET)),$(PRESET),full) $(CAMPAIGN_ARGS)

clean:
	rm -rf _build
