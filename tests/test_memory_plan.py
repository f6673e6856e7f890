"""``python -m synergy.resources --configfile ...``: the per-GPU memory plan of a study's GPU jobs (synergy/memory_plan.py).

The parameter counts behind it are checked against a real model (the tiny Qwen2.5-VL, counted by
torch) and the published sizes of Qwen2.5-VL-7B (8.29 B) and -32B (33.5 B); the ZeRO accounting
against its definition; the command against config/paper.yaml, which it must flag where a job
does not fit an 80 GiB GPU and pass on a 141 GiB one. (Not yet checked against a measured GPU
peak: no GPU was lent; docs/gpu.md.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synergy.config import GRPOSettings
from synergy.memory_plan import GIB, arch_of, plan_grpo, _states
from synergy.models import load_model

ROOT = Path(__file__).resolve().parent.parent


def test_parameter_counts_match_real_and_published_models(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    a = arch_of(None, str(tiny_model_dir))
    vision = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    text = sum(p.numel() for n, p in model.named_parameters() if "visual" not in n)
    assert a.vision_params == pytest.approx(vision, rel=0.015) and a.text_params == pytest.approx(text, rel=0.015)
    for name, billions in (("Qwen/Qwen2.5-VL-7B-Instruct", 8.29), ("Qwen/Qwen2.5-VL-32B-Instruct", 33.5)):
        b = arch_of(name, None)
        assert (b.text_params + b.vision_params) / 1e9 == pytest.approx(billions, rel=0.01)
    with pytest.raises(ValueError, match="set its local_path"):
        arch_of("someone/unknown-model", None)


def test_zero_stages_shard_what_they_should():
    a = arch_of("Qwen/Qwen2.5-VL-7B-Instruct", None)
    t, f = a.text_params, a.vision_params  # vision frozen
    assert _states(a, 0, 8, True) == pytest.approx((16 * t + 2 * f) / GIB)
    assert _states(a, 3, 8, True) == pytest.approx(_states(a, 3, 1, True) / 8)
    assert _states(a, 3, 8, True) < _states(a, 2, 8, True) < _states(a, 1, 8, True) < _states(a, 0, 8, True)
    cfg = dict(learning_rate=1e-6, steps=1, prompts_per_step=8, mini_batch_size=8, num_generations=8,
               micro_batch_size=2, max_new_tokens=4096, deepspeed_stage=3, rollout_backend="vllm")
    on = plan_grpo("x", a, GRPOSettings(**cfg, gradient_checkpointing=True), 8, 80, 1003520, 0.4)
    off = plan_grpo("x", a, GRPOSettings(**cfg, gradient_checkpointing=False), 8, 80, 1003520, 0.4)
    assert off.parts["activations"] > 10 * on.parts["activations"]
    assert on.parts["vllm"] == pytest.approx(32.0) and on.parts["reference"] == pytest.approx(
        2 * (a.text_params + a.vision_params) / 8 / GIB)


def _plan(*args):
    return subprocess.run([sys.executable, "-m", "synergy.resources", "--configfile", "config/paper.yaml", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_paper_plan_flags_the_jobs_that_do_not_fit_an_80_gib_gpu():
    done = _plan("--gpu-memory-gb", "80")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = {line.split()[1] if line.startswith("train_") else line.split()[0]: line
             for line in done.stdout.splitlines()[1:-1]}
    for arm in ("sft-s1-gemini", "sft-s1.1-r1", "sft-eureka", "rl", "rl-nokl", "rl-noeasy", "twostage",
                "interleaved", "progressive", "mixing"):
        assert arm in lines, done.stdout
    assert " NO " in lines["twostage"] and " yes " in lines["rl"], done.stdout
    assert "will not fit: train_grpo twostage, judge (vllm)" in done.stdout
    big = _plan("--gpu-memory-gb", "141")
    assert big.returncode == 0 and "14 of 14 jobs fit" in big.stdout, big.stdout
