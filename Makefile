# Entry points. `make study` and `make test` set up .venv themselves on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
SMK := $(VENV)/bin/snakemake

.PHONY: setup study smoke compare test test-fast dag clean

setup: $(VENV)/.installed

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

compare: setup        ## two studies side by side: make compare A=results/embedded B=results/smoke
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=results/<study> B=results/<study>"; exit 2; }
	$(PY) -m synergy.compare $(A) $(B)

test: setup           ## every test tier: unit, DAG, end to end on the smoke config
	$(PY) -m pytest -q

test-fast: setup      ## unit + DAG tests only
	$(PY) -m pytest -q -m "not slow"

dag: setup
	$(SMK) -n

clean:
	rm -rf results logs .snakemake
