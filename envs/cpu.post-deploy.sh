#!/usr/bin/env bash
# Post-deploy step of envs/cpu.yaml (Snakemake runs <env>.post-deploy.sh inside the new env, from the
# workflow's working directory; by hand: activate the env, cd to the repository, run this script):
# the synergy package with the pinned dependencies of pyproject.toml.
set -euo pipefail
repo="${SYNERGY_REPO:-$PWD}"
if ! grep -qs '^name = "synergy"' "$repo/pyproject.toml"; then
  echo "envs/cpu.post-deploy.sh: $repo is not the synergy repository; run it from there or set SYNERGY_REPO" >&2
  exit 1
fi
python -m pip install -e "$repo"
python -c "import torch, synergy; print('cpu env: torch', torch.__version__)"
