"""GRPO and its hybrids under DeepSpeed ZeRO-3 and ZeRO-2: 2 processes over gloo on CPU, through the launcher.

The paper study trains every arm with ``deepspeed_stage: 3`` on 8 GPUs; here the same code path runs
on CPU with 2 processes (``synergy.launch.run_trainer`` -> torchrun -> accelerate + DeepSpeed). Each
arm kind of config/paper.yaml (rl, rl-noeasy, interleaved, progressive, two-stage) trains 2 steps;
the saved model must load with ``from_pretrained``, hold whole tensors (not ZeRO-3's empty
partitions) in the Hub key layout, and have moved from its start. Under ZeRO-3 the reference model runs in a
DeepSpeed inference engine (its KL is finite and positive once the policy moved); a run killed after
step 1 resumes from its ZeRO state. ZeRO-2 never partitions the weights, so its saved model is the
reference for what the ZeRO-3 gather must give: both runs sample the same rollouts (same seeds per
process) and must end with the same weights up to float summation order. The models saved under
ZeRO-3 merge (``synergy.merge``) like any other, and SFT on a mixing set runs the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from warm import warm_model
import torch
from safetensors.torch import load_file

from synergy.config import GRPOSettings, SFTSettings
from synergy.data.suite import build_train_set
from synergy.launch import run_trainer
from synergy.train.grpo import drop_easy_questions

pytest.importorskip("deepspeed")

WEIGHT_TOLERANCE = 5e-5  # ZeRO-2 vs ZeRO-3 final weights: float summation order only (measured 1.2e-5)


def _cfg(**kw) -> GRPOSettings:
    base = dict(learning_rate=2e-3, steps=2, prompts_per_step=4, mini_batch_size=2, num_generations=2,
                micro_batch_size=2, max_new_tokens=10, kl_coef=0.05, save_every_steps=1, reasoning_instruction=False,
                deepspeed_stage=3, gradient_checkpointing=True)
    base.update(kw)
    return GRPOSettings(**base)


@pytest.fixture(scope="module")
def rows():
    """Yes/no questions (answer A = yes, B = no), each with a formatted trace for the hybrids."""
    out = build_train_set("rl-exists", 16, {"exists": 1.0}, style="none", modality="image", seed=0, image_size=56,
                          max_objects=4, exclude=set())
    return [{**r, "response": f"<think> I count </think> \\boxed{{{r['answer']}}}"} for r in out]


@pytest.fixture(scope="module")
def warm_dir(tiny_model_dir, rows, tmp_path_factory):
    """The tiny model after 30 SFT steps on formatted answers with a random letter: rewards vary within groups."""
    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("warm") / "model"
    warm_model(tiny_model_dir, rows, path, batches=2)
    return path


def _grpo(tmp_path, name, init_dir, rows, cfg, **kw):
    d = tmp_path / name
    out = run_trainer("grpo", processes=2, init_dir=init_dir, rows=rows, out_dir=d / "model",
                      log_path=d / "log.parquet", state_dir=d / "state", cfg=cfg, threads=2,
                      log_file=d / "train.log", seed=0, **kw)
    return d, out


def _check_saved(d, init_dir, steps=2):
    """The saved model loads with from_pretrained, has the init's keys and shapes, and moved from it."""
    from transformers import AutoModelForImageTextToText

    saved, init = load_file(d / "model/model.safetensors"), load_file(init_dir / "model.safetensors")
    assert set(saved) == set(init)  # the Hub key layout, as a one-process save writes it
    assert all(saved[k].shape == init[k].shape for k in saved)  # whole tensors, not ZeRO-3 partitions
    assert all(torch.isfinite(v).all() for v in saved.values())
    moved = [k for k in saved if not torch.equal(saved[k], init[k])]
    assert any(k.startswith("lm_head") or "language_model" in k for k in moved), "the policy did not move"
    assert not any("visual" in k for k in moved)  # the frozen vision tower stays as it was
    model = AutoModelForImageTextToText.from_pretrained(d / "model", use_safetensors=True)
    state = model.state_dict()
    for k, v in saved.items():  # from_pretrained loads exactly the saved tensors (modulo key renaming)
        match = [s for s in state if s.endswith(k.split("model.", 1)[-1])]
        assert match and any(torch.equal(state[m], v) for m in match), k
    log = pl.read_parquet(d / "log.parquet")
    assert log["step"].to_list() == list(range(1, steps + 1))
    return saved, log


# ----------------------------------------------------------------------------- default tier


def test_zero3_grpo_rl_resumes_and_saves_the_gathered_model(tmp_path, warm_dir, rows):
    """rl under ZeRO-3: killed after step 1, resumed from its ZeRO shards, the final model gathered and saved."""
    cfg = _cfg()
    d, stopped = _grpo(tmp_path, "rl", warm_dir, rows, cfg, stop_after_steps=1)
    assert stopped == {"completed": False, "step": 1}
    shards = sorted(p.name for p in (d / "state/step-000001").rglob("*") if "optim_states" in p.name)
    assert len(shards) == 2, shards  # ZeRO: one optimiser shard per rank
    d, summary = _grpo(tmp_path, "rl", warm_dir, rows, cfg)
    assert summary["completed"] and summary["resumed_from_step"] == 1
    text = (d / "train.log").read_text()
    assert "resumed from" in text and "DeepSpeed inference engine (ZeRO stage 3)" in text
    assert "gradient_clipping=1.0" in text  # grpo.max_grad_norm reached DeepSpeed's config
    # one DeepSpeed optimiser step per update (2 per step here), counted across the resume
    assert f"DeepSpeed optimizer steps: {summary['updates']} ({summary['updates']} updates)" in text
    assert summary["updates"] == 4
    saved, log = _check_saved(d, warm_dir)
    assert log["kl"].is_finite().all() and log["kl"][1] > 0  # the reference forward ran on gathered weights
    assert not (d / "state").exists()


def test_synced_decode_makes_every_process_run_the_same_forwards(tmp_path, tiny_model_dir):
    """hf rollouts under ZeRO-3: with synced_gpus every rank runs as many forwards, however early its rows stop."""
    script = tmp_path / "synced.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys, torch, torch.distributed as dist
        from synergy.generate.hf import SamplingConfig, generate
        from synergy.models import load_model
        from synergy.prompts import Prompt
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        model, processor = load_model({str(tiny_model_dir)!r})
        calls = []
        model.register_forward_pre_hook(lambda *a: calls.append(1))
        prompts = [Prompt(messages=[{{"role": "user", "content": [{{"type": "text", "text": "How many?"}}]}}])]
        if rank == 0:  # rank 0 stops after one token: its greedy first token is made its stop token
            first = generate(model, processor, prompts, SamplingConfig(temperature=0, max_new_tokens=1))[0][0]
            model.generation_config.eos_token_id = [first.token_ids[0]]
        for synced in (False, True):
            calls.clear()
            cfg = SamplingConfig(n=2, temperature=0 if rank == 0 else 1.0, max_new_tokens=24, seed=3)
            out = generate(model, processor, prompts, cfg, synced_gpus=synced)
            with open(os.path.join({str(tmp_path)!r}, f"rank{{rank}}-{{int(synced)}}.json"), "w") as f:  # own file:
                json.dump({{"rank": rank, "synced": synced, "calls": len(calls),  # two ranks' prints can interleave
                           "tokens": [c.num_tokens for c in out[0]]}}, f)
        dist.destroy_process_group()
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, "\n".join(l for l in done.stderr.splitlines() if "Error" in l or "rror:" in l)[-3000:]
    res = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert len(res) == 4, [p.name for p in tmp_path.glob("rank*.json")]
    by = {(r["rank"], r["synced"]): r for r in res}
    assert by[(0, False)]["calls"] == 1 < by[(1, False)]["calls"]  # unsynced: rank 0 stops after its prompt pass
    assert by[(0, True)]["calls"] == by[(1, True)]["calls"] == by[(1, False)]["calls"]
    assert by[(0, True)]["tokens"] == by[(0, False)]["tokens"]  # the extra steps only pad
    assert by[(1, True)]["tokens"] == by[(1, False)]["tokens"]


# ----------------------------------------------------------------------------- slow tier

ARM_KINDS = {
    "interleaved": dict(hybrid="interleaved", kl_coef=0.0),
    "progressive": dict(hybrid="progressive", kl_coef=0.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(ARM_KINDS))
def test_zero3_grpo_hybrid_arms(tmp_path, warm_dir, rows, kind):
    """interleaved and progressive (paper §3.1) under ZeRO-3: zero-pass questions routed on each rank."""
    d, summary = _grpo(tmp_path, kind, warm_dir, rows, _cfg(**ARM_KINDS[kind]))
    assert summary["completed"]
    saved, log = _check_saved(d, warm_dir)
    routed = log["sft_questions"].sum()  # interleaved: trace as SFT; progressive: trace prefix (step 1: whole)
    assert routed > 0, log  # some question had no correct rollout and got its trace


@pytest.mark.slow
def test_zero3_grpo_rl_noeasy(tmp_path, warm_dir, rows):
    """rl-noeasy (paper §2.2): the questions the base model solved in all G rollouts dropped, then ZeRO-3 GRPO."""
    cfg = _cfg(drop_easy=True)
    samples = pl.DataFrame({"id": [r["id"] for r in rows for _ in range(2)], "sample": [0, 1] * len(rows),
                            "correct": [k < 4 for k in range(len(rows)) for _ in range(2)]})
    kept, dropped = drop_easy_questions(rows, samples, cfg.num_generations)
    assert dropped == 4 and len(kept) == 12
    d, summary = _grpo(tmp_path, "noeasy", warm_dir, kept, cfg)
    assert summary["num_rows"] == 12
    _check_saved(d, warm_dir)


@pytest.mark.slow
def test_zero3_two_stage_from_zero3_sft_and_the_outputs_merge(tmp_path, warm_dir, rows):
    """two-stage (paper §3.1): ZeRO-3 SFT, then ZeRO-3 GRPO from it with it as KL reference; the two merge."""
    from synergy.merge import MergeSettings, merge_models

    sft_cfg = SFTSettings(learning_rate=1e-3, batch_size=4, micro_batch_size=2, epochs=2, warmup_ratio=0.0,
                          schedule="constant", val_fraction=0.0, select="last", save_every_steps=10, max_length=256,
                          deepspeed_stage=3, reasoning_instruction=False)
    sft_dir = tmp_path / "sft"
    summary = run_trainer("sft", processes=2, init_dir=warm_dir, rows=rows[:8], out_dir=sft_dir / "model",
                          log_path=sft_dir / "log.parquet", state_dir=sft_dir / "state", cfg=sft_cfg, threads=2,
                          log_file=sft_dir / "train.log", seed=0)
    assert summary["rows_used"] == 8
    d, summary = _grpo(tmp_path, "twostage", sft_dir / "model", rows, _cfg(max_new_tokens=16))
    assert summary["reference_model"] == str(sft_dir / "model")
    _check_saved(d, sft_dir / "model")
    merged = merge_models(d / "model", sft_dir / "model", tmp_path / "merged", MergeSettings("linear", 0.25))
    a, b = load_file(d / "model/model.safetensors"), load_file(sft_dir / "model/model.safetensors")
    m = load_file(tmp_path / "merged/model.safetensors")
    assert merged["tensors"] == len(a)
    assert all(torch.allclose(m[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_zero2_and_zero3_end_with_the_same_weights(tmp_path, warm_dir, rows):
    """ZeRO-2 keeps whole weights on every rank: the ZeRO-3 gather must give the same final model."""
    d2, _ = _grpo(tmp_path, "zero2", warm_dir, rows, _cfg(deepspeed_stage=2))
    d3, _ = _grpo(tmp_path, "zero3", warm_dir, rows, _cfg(deepspeed_stage=3))
    w2, log2 = _check_saved(d2, warm_dir)
    w3, log3 = _check_saved(d3, warm_dir)
    assert "reference model replicated on every process (ZeRO stage 2" in (d2 / "train.log").read_text()
    assert log2["reward"].to_list() == log3["reward"].to_list()  # the same rollouts
    diff = max(float((w2[k] - w3[k]).abs().max()) for k in w2)
    print(f"max |w(ZeRO-2) - w(ZeRO-3)| = {diff:.3g}")
    assert diff < WEIGHT_TOLERANCE
