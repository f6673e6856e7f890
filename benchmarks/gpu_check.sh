#!/usr/bin/env bash
# The GPU checks of a lent GPU machine (docs/gpu.md): the gpu-marked tests, the CPU tiers' training and
# generation tests with CUDA visible (accelerate and load_model(device="cuda") then run them on the GPU),
# and generation throughput on the GPU. Expects the image's torch/transformers; extra wheels in .whl/.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
timeout 360 python3 -m pytest -q -p no:cacheprovider -m "not slow" tests/test_gpu.py tests/test_generate.py \
  tests/test_hybrid.py tests/test_grpo.py tests/test_sft_trainer.py tests/test_losses.py 2>&1 | tee "$OUT/pytest.log" | tail -40
timeout 150 python3 benchmarks/bench_generate.py --device cuda --prompts 64 --n 16 --max-new-tokens 64 \
  --max-batch-sequences 1024 --loop-sequences 16 2>&1 | tee "$OUT/bench_generate.log" | tail -15
