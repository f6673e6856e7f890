"""Hybrid SFT & RL (paper §3.1): which tokens get which loss, the prefix schedule, a real run."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from synergy.config import GRPOSettings
from synergy.data.schema import DataError
from synergy.data.suite import build_train_set
from synergy.grading import Grader
from synergy.train.grpo import (
    HYBRID_COLUMNS,
    METRIC_COLUMNS,
    HybridPlan,
    collect_rollouts,
    prefix_fraction,
    train_grpo,
    zero_pass_ids,
)
from synergy.train.sft import END_OF_TURN

G = 3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trace_rows():
    """Questions with multimodal long-CoT traces (the eureka set's style)."""
    return build_train_set("traces", 12, {"exists": 1.0, "count_all": 1.0}, style="reflective_short", modality="image",
                           seed=3, image_size=56, max_objects=4, exclude=set())


def _cfg(**kw) -> GRPOSettings:
    base = dict(learning_rate=3e-3, steps=4, prompts_per_step=2, mini_batch_size=1, num_generations=G,
                micro_batch_size=4, max_new_tokens=8, kl_coef=0.0, save_every_steps=2, reasoning_instruction=True)
    base.update(kw)
    return GRPOSettings(**base)


def _collect(tiny_loaded, rows, plan, **kw):
    model, processor = tiny_loaded
    with Grader(timeout_s=5) as grader:
        return collect_rollouts(model, processor, rows, _cfg(**kw), step_seed=5, grader=grader,
                                image_position="after_text", hybrid=plan)


def _decode(processor, ids):
    return processor.tokenizer.decode(ids.tolist(), skip_special_tokens=False)


# ------------------------------------------------------------------ the schedule


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_prefix_schedule_fades_from_full_to_zero(schedule):
    steps = 11
    f = [prefix_fraction(s, steps, schedule) for s in range(steps)]
    assert f[0] == 1.0 and f[-1] == 0.0
    assert all(a >= b for a, b in zip(f, f[1:]))
    assert f[5] == pytest.approx(0.5)  # the middle, for both shapes
    if schedule == "cosine":
        assert f[1] > 1 - 1 / 10  # cosine keeps more prefix early than linear
    # fading over the first half: zero from step 5 on
    half = [prefix_fraction(s, steps, schedule, fade_fraction=0.5) for s in range(steps)]
    assert half[0] == 1.0 and half[4] > 0 and all(x == 0.0 for x in half[5:])
    with pytest.raises(ValueError, match="linear or cosine"):
        prefix_fraction(0, 10, "step")


def test_zero_pass_ids_from_base_rollouts():
    samples = pl.DataFrame({"id": ["a"] * 3 + ["b"] * 3 + ["c"] * 4,
                            "sample": [0, 1, 2] * 2 + [0, 1, 2, 3],
                            "correct": [False, False, False, False, True, False, False, False, False, True]})
    assert zero_pass_ids(samples, 3) == {"a", "c"}  # c's one success is its 4th rollout, beyond G = 3
    with pytest.raises(ValueError, match="'a' has 3"):
        zero_pass_ids(samples, 4)


# ------------------------------------------------------------------ routing of tokens


def test_interleaved_routes_zero_pass_question_to_sft_on_its_trace(tiny_loaded, trace_rows):
    _, processor = tiny_loaded
    rows = trace_rows[:2]
    plan = HybridPlan(mode="interleaved", sft_weight=0.7, online=False, offline_zero=frozenset({0}))
    ro = _collect(tiny_loaded, rows, plan)
    assert ro.routes == ["sft", "rl"]
    # group 0: no RL token at all; its first sequence carries the trace + end of turn with SFT weight 0.7
    assert ro.completion_mask[:G].sum() == 0
    sft0 = ro.sft_weight[0] > 0
    assert torch.allclose(ro.sft_weight[0][sft0], torch.tensor(0.7))
    trace = rows[0]["response"].lstrip("\n")
    assert _decode(processor, ro.input_ids[0][sft0]).strip() == (trace + END_OF_TURN).strip()
    assert (ro.sft_weight[1:G] == 0).all() and not ro.attention_mask[1:G].sum(1).eq(0).any()
    # group 1: plain GRPO, RL on the completions, no SFT token
    assert (ro.sft_weight[G:] == 0).all()
    assert ro.completion_mask[G:].sum(1).tolist() == ro.lengths.tolist()  # the own samples are group 1's
    assert ro.rewards[0].eq(0).all()


def test_interleaved_online_routes_exactly_the_groups_without_a_correct_rollout(tiny_loaded, trace_rows):
    rows = trace_rows[:6]
    plan = HybridPlan(mode="interleaved", sft_weight=1.0, online=True)
    ro = _collect(tiny_loaded, rows, plan)
    correct = ro.correct.view(len(rows), G)  # online: every question was sampled unguided first
    for i, route in enumerate(ro.routes):
        assert route == ("sft" if not correct[i].any() else "rl"), i
        has_rl = bool(ro.completion_mask[i * G:(i + 1) * G].any())
        has_sft = bool((ro.sft_weight[i * G:(i + 1) * G] > 0).any())
        assert (has_rl, has_sft) == ((False, True) if route == "sft" else (True, False))


def test_progressive_prefix_gets_weighted_sft_and_continuation_gets_rl(tiny_loaded, trace_rows):
    _, processor = tiny_loaded
    tok = processor.tokenizer
    rows = trace_rows[2:4]
    plan = HybridPlan(mode="progressive", sft_weight=0.2, prefix_fraction=0.5, online=False,
                      offline_zero=frozenset({0}))
    ro = _collect(tiny_loaded, rows, plan)
    assert ro.routes == ["prefix", "rl"] and ro.prefix_fraction == 0.5
    trace_ids = tok(rows[0]["response"].lstrip("\n"), add_special_tokens=False)["input_ids"]
    k = round(0.5 * len(trace_ids))
    prefix = tok.decode(trace_ids[:k], skip_special_tokens=False)
    # sequence 0: the prefix tokens have SFT weight 0.2; they come right before the RL continuation
    w = ro.sft_weight[0]
    assert torch.allclose(w[w > 0], torch.tensor(0.2))
    assert _decode(processor, ro.input_ids[0][w > 0]) == prefix
    first_rl = int(ro.completion_mask[0].nonzero()[0])
    assert int((w > 0).nonzero()[-1]) == first_rl - 1
    # the other rollouts of the group see the same prefix (in their prompt) with no SFT loss
    for j in range(1, G):
        assert (ro.sft_weight[j] == 0).all() and ro.completion_mask[j].any()
        a = ro.input_ids[j][ro.attention_mask[j].bool() & ~ro.completion_mask[j].bool()]
        assert _decode(processor, a).endswith(prefix)
    assert not ro.sft_weight[G:].any()
    # the guided question is not among the policy's own samples: only group 1's
    assert ro.correct.numel() == G


def test_progressive_full_prefix_is_pure_sft_and_zero_prefix_is_plain_grpo(tiny_loaded, trace_rows):
    rows = trace_rows[4:6]
    full = _collect(tiny_loaded, rows, HybridPlan(mode="progressive", sft_weight=0.2, prefix_fraction=1.0,
                                                  online=False, offline_zero=frozenset({1})))
    assert full.routes == ["rl", "sft"] and not full.completion_mask[G:].any()
    assert torch.allclose(full.sft_weight[G][full.sft_weight[G] > 0], torch.tensor(0.2))
    faded = _collect(tiny_loaded, rows, HybridPlan(mode="progressive", sft_weight=0.2, prefix_fraction=0.0,
                                                   online=False, offline_zero=frozenset({1})))
    assert faded.routes == ["rl", "rl"] and not faded.sft_weight.any()
    assert faded.completion_mask[G:].any(1).all() and faded.correct.numel() == 2 * G  # sampled unguided


def test_hybrid_needs_traces(tiny_loaded, trace_rows):
    rows = [dict(r, response=None) for r in trace_rows[:2]]
    with pytest.raises(DataError, match="external trace"):
        _collect(tiny_loaded, rows, HybridPlan(mode="interleaved", sft_weight=1.0, online=False,
                                               offline_zero=frozenset({0})))


# ------------------------------------------------------------------ a real run


@pytest.mark.parametrize("mode", ["interleaved", "progressive"])
def test_hybrid_run_trains_the_traces_and_logs_its_columns(tiny_model_dir, trace_rows, tmp_path, mode):
    """With a random model every question is zero-pass: the traces' SFT loss must fall over the steps."""
    cfg = _cfg(hybrid=mode, steps=6, prompts_per_step=2, mini_batch_size=2, learning_rate=5e-3,
               prefix_fade_fraction=1.0)
    rows = trace_rows[:2]  # the same two questions every step
    summary = train_grpo(tiny_model_dir, rows, tmp_path / "out", log_path=tmp_path / "log.parquet",
                         state_dir=tmp_path / "state", cfg=cfg, seed=1)
    assert summary["completed"]
    df = pl.read_parquet(tmp_path / "log.parquet")
    assert df.columns == list(METRIC_COLUMNS + HYBRID_COLUMNS)
    assert df["sft_questions"].max() >= 1 and df["sft_tokens"].max() > 0
    sft = [x for x in df["sft_loss"].to_list() if x is not None and math.isfinite(x)]
    assert len(sft) >= 3
    if mode == "interleaved":
        assert sft[-1] < sft[0] - 0.3, sft  # the model learns the demonstrations
        assert df["prefix_fraction"].is_nan().all()
    else:
        assert df["prefix_fraction"].to_list()[0] == 1.0 and df["prefix_fraction"].to_list()[-1] == 0.0
