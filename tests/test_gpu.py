"""GPU tier (marked ``gpu``; skipped without CUDA): the same code paths as the CPU tests, on a GPU.

What this shows: the hf generation backend samples on CUDA in bf16 (``load_model(device="cuda")``),
the SFT and GRPO trainers put the model on the GPU (accelerate picks it; no code path names the CPU)
and learn there, and the saved arms load back on the CPU. vLLM has its own GPU tests
(tests/test_vllm.py) that also need the vllm package.
"""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from synergy.config import GRPOSettings, SFTSettings
from synergy.data.suite import build_train_set
from synergy.generate import SamplingConfig, generate
from synergy.grading import Grader, grade_row
from synergy.models import load_model
from synergy.prompts import build_prompt

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def rows():
    return build_train_set("gpu", 8, {"exists": 1.0, "count_all": 1.0}, style="reflective_short", modality="image",
                           seed=5, image_size=56, max_objects=4, exclude=set())


def test_generation_runs_on_the_gpu_in_bf16(tiny_model_dir, rows):
    model, processor = load_model(tiny_model_dir, device="cuda")
    assert next(model.parameters()).device.type == "cuda" and next(model.parameters()).dtype == torch.bfloat16
    prompts = [build_prompt(r, True, "after_text") for r in rows[:4]]
    torch.cuda.reset_peak_memory_stats()
    out = generate(model, processor, prompts, SamplingConfig(n=4, max_new_tokens=16, seed=0))
    assert torch.cuda.max_memory_allocated() > 0
    assert [len(o) for o in out] == [4] * 4
    assert all(1 <= c.num_tokens <= 16 for o in out for c in o)
    with Grader(5.0) as grader:  # the one grader reads GPU samples like CPU ones
        grades = [grade_row(grader, c.text, r) for r, o in zip(rows, out) for c in o]
    assert len(grades) == 16 and all(g.status in {"ok", "no_answer", "ambiguous"} for g in grades)


def test_sft_trains_on_the_gpu_and_its_arm_loads_on_the_cpu(tiny_model_dir, rows, tmp_path):
    from synergy.train.sft_trainer import train_sft

    cfg = SFTSettings(learning_rate=3e-3, batch_size=4, micro_batch_size=4, epochs=4, warmup_ratio=0.0,
                      schedule="constant", val_fraction=0.0, select="last", save_every_steps=100, max_length=2048)
    torch.cuda.reset_peak_memory_stats()
    summary = train_sft(tiny_model_dir, rows, tmp_path / "model", log_path=tmp_path / "log.parquet",
                        state_dir=tmp_path / "state", cfg=cfg)
    assert torch.cuda.max_memory_allocated() > 0  # the trainer used the GPU
    assert summary["steps"] == 4 * 2  # 8 rows in batches of 4, 4 epochs
    loss = pl.read_parquet(tmp_path / "log.parquet")["loss"].drop_nulls().to_list()
    assert loss[-1] < loss[0], loss
    model, _ = load_model(tmp_path / "model")  # a GPU-trained arm is a normal HF folder
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_grpo_interleaved_trains_on_the_gpu(tiny_model_dir, rows, tmp_path):
    from synergy.train.grpo import train_grpo

    cfg = GRPOSettings(learning_rate=5e-3, steps=6, prompts_per_step=2, mini_batch_size=2, num_generations=4,
                       micro_batch_size=8, max_new_tokens=8, kl_coef=0.0, save_every_steps=3,
                       reasoning_instruction=True, hybrid="interleaved")
    torch.cuda.reset_peak_memory_stats()
    summary = train_grpo(tiny_model_dir, rows[:2], tmp_path / "out", log_path=tmp_path / "log.parquet",
                         state_dir=tmp_path / "state", cfg=cfg, seed=1)
    assert torch.cuda.max_memory_allocated() > 0
    assert summary["completed"]
    df = pl.read_parquet(tmp_path / "log.parquet")
    assert df.height == 6
    sft = [x for x in df["sft_loss"].to_list() if x is not None and math.isfinite(x)]
    assert len(sft) >= 3 and min(sft[-3:]) < sft[0] - 0.3, sft  # a random model never passes: the traces are learned
