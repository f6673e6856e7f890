# Entry points. `make study` and `make test` set up .venv themselves on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
SMK := $(VENV)/bin/snakemake

.PHONY: help setup study smoke rehearsal compare test test-fast dag clean

help:                 ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## /  make \1\t/' | expand -t 20

setup: $(VENV)/.installed   ## the pinned .venv (CPU torch; about 6.4 GB)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, torchvision, transformers, synergy" && touch $@

study: setup          ## the embedded study on this machine (CPU): every table and figure in results/embedded/
	$(SMK) --profile profiles/local
	@echo "embedded study: results in results/embedded/ (report: results/embedded/figures/all.pdf), logs in logs/embedded/"

smoke: setup          ## the same DAG on the smoke config (minutes): results/smoke/
	$(SMK) --profile profiles/local --configfile config/smoke.yaml
	@echo "smoke study: results in results/smoke/ (report: results/smoke/figures/all.pdf), logs in logs/smoke/"

rehearsal: setup      ## config/paper.yaml at toy scale on a Slurm cluster (PARTITION=, GPU_PARTITION=; docs/paper-study.md)
	PYTHONPATH=$(CURDIR) $(PY) scripts/prepare_rehearsal.py resources/rehearsal
	SYNERGY_SLURM_PARTITION=$(PARTITION) SYNERGY_SLURM_GPU_PARTITION=$(GPU_PARTITION) \
	  $(SMK) --profile profiles/slurm --configfile config/paper.yaml config/rehearsal.yaml
	@echo "rehearsal: results in results/paper/ (report: results/paper/figures/all.pdf), logs in logs/paper/"

compare: setup        ## two studies side by side: make compare A=results/embedded B=results/smoke
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=results/<study> B=results/<study>"; exit 2; }
	$(PY) -m synergy.compare $(A) $(B)

test: setup           ## every test tier: unit, DAG, end to end on the smoke config
	$(PY) -m pytest -q

test-fast: setup      ## unit + DAG tests only
	$(PY) -m pytest -q -m "not slow"

dag: setup            ## the embedded study's DAG, nothing runs
	$(SMK) -n

clean:                ## delete results/, logs/ and .snakemake/ of EVERY study (trained models too), after a yes
	@echo "This deletes results/, logs/ and .snakemake/: every study's trained models, tables and figures:"
	@du -sh results logs .snakemake 2>/dev/null || true
	@if [ "$(YES)" = "1" ]; then ans=yes; else printf "Type yes to delete them: "; read ans; fi; \
	if [ "$$ans" = "yes" ]; then rm -rf results logs .snakemake && echo deleted; else echo "kept (nothing deleted)"; exit 1; fi
