"""Distributed training on CPU: 2 processes (torchrun) with DeepSpeed ZeRO-3 over gloo vs one process.

The same global batch on both sides (4 sequences per optimiser step: 2 micro-batches of 2 in one
process, 1 micro-batch of 2 on each of 2 processes), so the loss curve, the validation losses and
the final weights must agree up to float summation order. The 2-process run is also killed after
step 3 (``stop_after_steps``) and relaunched: it must resume from the ZeRO-3 state, not start over.
"""

from __future__ import annotations

import io
import json
import random

import polars as pl
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from synergy.config import SFTSettings
from synergy.data.schema import make_row
from synergy.launch import run_trainer

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed")

TOLERANCE = 1e-4  # loss; measured difference ~2e-7 (float summation order across ranks)


def _png(colour: str, k: int) -> bytes:
    im = Image.new("RGB", (56, 56), "white")
    for j in range(k):
        ImageDraw.Draw(im).rectangle((4 + 17 * j, 20, 15 + 17 * j, 31), fill=colour)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_rows(n: int) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        colour, k = rng.choice(["red", "blue", "green"]), rng.randint(1, 3)
        rows.append(make_row(id=f"d/{i:03d}", bench="d", question=f"How many {colour} squares are there in the image?",
                             answer=str(k), answer_type="integer", images=[_png(colour, k)],
                             response=f"<think> I count {k} {colour} squares. </think> \\boxed{{{k}}}", source="test"))
    return rows


def test_two_process_zero3_matches_one_process_and_resumes(tiny_model_dir, tmp_path):
    cfg = SFTSettings(learning_rate=1e-3, batch_size=4, micro_batch_size=2, epochs=2, warmup_ratio=0.0,
                      schedule="constant", val_fraction=0.25, select="last", save_every_steps=3, max_length=256,
                      deepspeed_stage=3)
    rows = make_rows(16)  # 12 train rows -> 3 steps per epoch, 6 in all; 4 validation rows

    def run(name, processes, **kw):
        d = tmp_path / name
        return run_trainer("sft", processes=processes, init_dir=tiny_model_dir, rows=rows, out_dir=d / "model",
                           log_path=d / "log.parquet", state_dir=d / "state", cfg=cfg, threads=2,
                           log_file=d / "train.log", seed=0, **kw)

    single = run("one", 1)  # one CPU process: no launcher, no DeepSpeed (the reference)

    stopped = run("two", 2, stop_after_steps=3)
    assert stopped == {"stopped": True, "step": 3}
    state = tmp_path / "two/state/step-000003"
    shards = sorted(p.name for p in state.rglob("*") if p.is_file() and "zero_pp_rank" in p.name)
    assert len([s for s in shards if "optim_states" in s]) == 2, shards  # ZeRO-3: one optimiser shard per rank
    summary = run("two", 2)

    log_text = (tmp_path / "two/train.log").read_text()
    assert "resumed from" in log_text and "[rank 0]" in log_text
    a = pl.read_parquet(tmp_path / "one/log.parquet").filter(pl.col("loss").is_not_null())
    b = pl.read_parquet(tmp_path / "two/log.parquet").filter(pl.col("loss").is_not_null())
    assert a["step"].to_list() == b["step"].to_list() == [1, 2, 3, 4, 5, 6]  # resumed, no step repeated
    diff = (a["loss"] - b["loss"]).abs().max()
    print(f"max |loss(1 process) - loss(2 processes, ZeRO-3)| = {diff:.3g}")
    assert diff < TOLERANCE
    assert a["loss"][-1] < a["loss"][0]  # it learned
    assert summary["val_losses"] == pytest.approx(single["val_losses"], abs=TOLERANCE)
    assert json.loads((tmp_path / "two/model/training_summary.json").read_text())["steps"] == 6

    wa, wb = load_file(tmp_path / "one/model/model.safetensors"), load_file(tmp_path / "two/model/model.safetensors")
    assert set(wa) == set(wb)  # the ZeRO-3 model is saved with the same (hub-layout) keys
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    assert not any(torch.equal(wa[k], load_file(tiny_model_dir / "model.safetensors")[k]) for k in wa
                   if k.startswith("lm_head"))  # and the trained weights did move
