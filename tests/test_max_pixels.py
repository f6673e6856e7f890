"""``prompt.max_pixels`` caps images alike in SFT, GRPO rollouts and log-prob passes, and evaluation.

The tiny test model's processor resizes every image to 56 x 56 px (4 visual tokens). With a cap
of 112 x 112 px a 224 x 224 image becomes 16 visual tokens in every path, and the models trained
with the cap carry it in their saved processor, so their later evaluation and rollouts (hf and
vLLM, which reads the processor's bounds) see the same images.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image, ImageDraw

from synergy.config import GRPOSettings, SFTSettings
from synergy.data.schema import make_row
from synergy.generate import get_backend
from synergy.generate.hf import encode_prompts
from synergy.generate.vllm import engine_kwargs, pixel_bounds
from synergy.grading import Grader
from synergy.models import load_model
from synergy.prompts import build_prompt
from synergy.train.grpo import collect_rollouts, train_grpo
from synergy.train.sft import collate_sft
from synergy.train.sft_trainer import train_sft

CAP = 112 * 112  # 16 visual tokens (28 x 28 px each after the 2 x 2 merge)


def _png(size: int, k: int) -> bytes:
    im = Image.new("RGB", (size, size), "white")
    for j in range(k):
        ImageDraw.Draw(im).rectangle((8 + 60 * j, 80, 50 + 60 * j, 140), fill="red")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def rows():
    return [make_row(id=f"big/{i}", bench="big", question="How many red squares are there in the image?",
                     answer=str(1 + i % 3), answer_type="integer", images=[_png(224, 1 + i % 3)],
                     response=f"<think> I count. </think> \\boxed{{{1 + i % 3}}}", source="test") for i in range(4)]


def _image_tokens(processor, ids: torch.Tensor) -> int:
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return int((ids == pad).sum())


def test_the_cap_reaches_sft_rollouts_and_evaluation_alike(tiny_model_dir, rows):
    _, plain = load_model(tiny_model_dir)
    model, capped = load_model(tiny_model_dir, max_pixels=CAP)
    prompt = build_prompt(rows[0], False)
    assert _image_tokens(plain, encode_prompts(plain, [prompt])["input_ids"]) == 4  # the processor's own bound
    # SFT batches
    assert _image_tokens(capped, collate_sft(capped, [prompt], [rows[0]["response"]])["input_ids"]) == 16
    # GRPO rollouts: the log-prob batch is built from the ids the sampler saw
    cfg = GRPOSettings(learning_rate=1e-3, steps=1, prompts_per_step=1, mini_batch_size=1, num_generations=2,
                       max_new_tokens=3, reasoning_instruction=False)
    with Grader(timeout_s=5) as grader:
        ro = collect_rollouts(model, capped, rows[:1], cfg, step_seed=0, grader=grader, image_position="after_text")
    assert _image_tokens(capped, ro.input_ids[0]) == 16
    # evaluation and difficulty sampling (hf backend) and the vLLM engine's processor arguments
    _, eval_proc = get_backend("hf").load(tiny_model_dir, max_pixels=CAP)
    assert _image_tokens(eval_proc, encode_prompts(eval_proc, [prompt])["input_ids"]) == 16
    assert pixel_bounds(capped)[1] == CAP
    assert engine_kwargs(tiny_model_dir, _VCfg(), max_pixels=CAP)["mm_processor_kwargs"] == {"max_pixels": CAP}


class _VCfg:
    tensor_parallel_size, gpu_memory_utilization, max_model_len, limit_mm_per_prompt = 1, 0.5, 512, 1


def test_trained_models_keep_the_cap(tiny_model_dir, rows, tmp_path):
    """SFT and GRPO train with the capped processor and save it with the model (so evaluation sees the same)."""
    torch.set_num_threads(2)
    sft = SFTSettings(learning_rate=1e-3, batch_size=2, micro_batch_size=2, epochs=1, val_fraction=0.0, select="last",
                      max_length=256, reasoning_instruction=False)
    train_sft(tiny_model_dir, rows, tmp_path / "sft", log_path=tmp_path / "sft.parquet", state_dir=tmp_path / "s1",
              cfg=sft, max_pixels=CAP)
    grpo = GRPOSettings(learning_rate=1e-3, steps=1, prompts_per_step=2, mini_batch_size=2, num_generations=2,
                        max_new_tokens=3, kl_coef=0.0, reasoning_instruction=False)
    train_grpo(tiny_model_dir, rows, tmp_path / "grpo", log_path=tmp_path / "grpo.parquet", state_dir=tmp_path / "s2",
               cfg=grpo, max_pixels=CAP)
    for name in ("sft", "grpo"):
        saved = json.loads((tmp_path / name / "processor_config.json").read_text())
        size = saved.get("image_processor", saved).get("size")
        assert size["longest_edge"] == CAP, (name, saved)
        _, proc = load_model(tmp_path / name)
        assert _image_tokens(proc, encode_prompts(proc, [build_prompt(rows[0], False)])["input_ids"]) == 16
