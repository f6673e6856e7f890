#!/usr/bin/env bash
# Post-deploy step of envs/gpu.yaml (Snakemake runs <env>.post-deploy.sh inside the new env, from the
# workflow's working directory; by hand: activate the env, cd to the repository, run this script).
#  1. the synergy package without its dependencies (envs/gpu.yaml holds them with vLLM's torch pins;
#     `pip install -e .` with dependencies would try to replace vLLM's torch 2.14.0 by the CPU pin 2.14.1);
#  2. flash-attn, compiled against the env's torch (--no-build-isolation; needs nvcc of the CUDA that
#     torch was built with). synergy does not call it yet (transformers' default sdpa attention is used),
#     so a failed build is reported and skipped; SYNERGY_SKIP_FLASH_ATTN=1 skips it on purpose.
set -euo pipefail
repo="${SYNERGY_REPO:-$PWD}"
if ! grep -qs '^name = "synergy"' "$repo/pyproject.toml"; then
  echo "envs/gpu.post-deploy.sh: $repo is not the synergy repository; run it from there or set SYNERGY_REPO" >&2
  exit 1
fi
python -m pip install --no-deps -e "$repo"
python - <<'PY'
import torch, vllm, transformers
assert torch.__version__.split("+")[0] == "2.14.0", torch.__version__
assert vllm.__version__ == "0.33.0", vllm.__version__
print(f"gpu env: torch {torch.__version__} (CUDA {torch.version.cuda}), vllm {vllm.__version__}, "
      f"transformers {transformers.__version__}")
PY
if [ "${SYNERGY_SKIP_FLASH_ATTN:-0}" != "1" ]; then
  python -m pip install --no-build-isolation --no-deps flash-attn==2.8.3.post2 \
    || echo "envs/gpu.post-deploy.sh: WARNING: flash-attn 2.8.3.post2 did not build (needs nvcc matching torch's CUDA); synergy runs without it" >&2
fi
python -c "import torch; assert torch.__version__.split('+')[0] == '2.14.0', 'flash-attn changed torch: ' + torch.__version__"
