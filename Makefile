# Entry points. `make study` and `make test` set up .venv themselves on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
SMK := $(VENV)/bin/snakemake

.PHONY: setup study smoke test test-fast dag clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, torchvision, transformers, synergy" && touch $@

study: setup          ## the embedded study on this machine (CPU): every table, figure and results/figures/all.pdf
	$(SMK) --profile profiles/local

smoke: setup          ## the same DAG on the smoke config (minutes)
	$(SMK) --profile profiles/local --configfile config/smoke.yaml

test: setup           ## every test tier: unit, DAG, end to end on the smoke config
	$(PY) -m pytest -q

test-fast: setup      ## unit + DAG tests only
	$(PY) -m pytest -q -m "not slow"

dag: setup
	$(SMK) -n

clean:
	rm -rf results logs .snakemake
