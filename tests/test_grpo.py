"""synergy.train.grpo: rollouts, the GRPO loop, resume, the easy-question filter, invariants.

Most tests share one tiny model that a short SFT warm-up taught to answer ``exists`` questions as
``<think> I count </think> \\boxed{A|B}`` with a random letter, so rewards vary within groups.
"""

from __future__ import annotations

import json
import logging
import math

import polars as pl
import pytest
from warm import warm_model
import torch
from safetensors.torch import load_file

from synergy.config import GRPOSettings
from synergy.data.suite import build_train_set
from synergy.generate.hf import SamplingConfig, encode_prompts, generate
from synergy.grading import Grader
from synergy.models import load_model, vision_parameters
from synergy.prompts import build_prompt
from synergy.train import grpo as grpo_mod
from synergy.train.core import TrainingDiverged
from synergy.train.grpo import METRIC_COLUMNS, collect_rollouts, drop_easy_questions, rollout_rows, train_grpo
from synergy.train.losses import token_logprobs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _settings(**kw) -> GRPOSettings:
    base = dict(learning_rate=2e-3, steps=4, prompts_per_step=2, mini_batch_size=1, num_generations=4,
                micro_batch_size=3, max_new_tokens=12, kl_coef=0.05, save_every_steps=2, reasoning_instruction=False)
    base.update(kw)
    return GRPOSettings(**base)


@pytest.fixture(scope="module")
def exists_rows():
    """Yes/no questions about 56 px images (answer A = yes, B = no)."""
    return build_train_set("rl-exists", 48, {"exists": 1.0}, style="none", modality="image", seed=0, image_size=56,
                           max_objects=4, exclude=set())


@pytest.fixture(scope="module")
def warm_model_dir(tiny_model_dir, exists_rows, tmp_path_factory):
    """The conftest tiny model after 30 SFT steps on formatted answers with a random letter."""
    path = tmp_path_factory.mktemp("warm") / "model"
    loss = warm_model(tiny_model_dir, exists_rows, path, batches=4)
    assert loss < 0.5
    return path


def _weights(path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _run(tmp, name, init, rows, cfg, **kw):
    out = tmp / name
    summary = train_grpo(init, rows, out, log_path=tmp / f"{name}.parquet", state_dir=tmp / f"{name}-state", cfg=cfg,
                         **kw)
    return out, summary


@pytest.fixture(scope="module")
def full_run(warm_model_dir, exists_rows, tmp_path_factory):
    """An uninterrupted 4-step run with a reference model (kl_coef 0.05), states every 2 steps."""
    tmp = tmp_path_factory.mktemp("grpo-full")
    out, summary = _run(tmp, "full", warm_model_dir, exists_rows, _settings())
    return tmp, out, summary


# ---------------------------------------------------------------------------------------- 1


def test_drop_easy_questions():
    rows = [{"id": i} for i in ("easy", "almost", "easy-first8", "hard")]
    samples = []
    for sample in range(8):
        samples.append({"id": "easy", "sample": sample, "correct": True})
        samples.append({"id": "almost", "sample": sample, "correct": sample != 3})  # 7 of 8
        samples.append({"id": "hard", "sample": sample, "correct": False})
    # 9 samples, listed out of order: judged on samples 0..7 (all correct)
    samples += [{"id": "easy-first8", "sample": 8, "correct": False}]
    samples += [{"id": "easy-first8", "sample": s, "correct": True} for s in reversed(range(8))]
    kept, dropped = drop_easy_questions(rows, pl.DataFrame(samples), 8)
    assert dropped == 2 and [r["id"] for r in kept] == ["almost", "hard"]

    with pytest.raises(ValueError, match="missing"):
        drop_easy_questions(rows + [{"id": "missing"}], pl.DataFrame(samples), 8)
    few = pl.DataFrame([{"id": "easy", "sample": s, "correct": True} for s in range(4)])
    with pytest.raises(ValueError, match="'easy' has 4"):
        drop_easy_questions(rows[:1], few, 8)


# ---------------------------------------------------------------------------------------- rollouts


def test_collect_rollouts_keeps_generated_ids(tiny_loaded, exists_rows):
    model, processor = tiny_loaded
    rows = exists_rows[:2]
    cfg = _settings(num_generations=3, max_new_tokens=6, reasoning_instruction=True)
    with Grader(timeout_s=5) as grader:
        ro = collect_rollouts(model, processor, rows, cfg, step_seed=11, grader=grader, image_position="after_text")
    N = 2 * 3
    assert ro.input_ids.shape[0] == N and ro.rewards.shape == (2, 3)
    assert ro.completion_mask.sum(1).tolist() == ro.lengths.tolist()
    assert all(1 <= n <= 6 for n in ro.lengths.tolist())
    assert all(n == 6 for n, t in zip(ro.lengths.tolist(), ro.truncated.tolist()) if t)
    # the same seed samples the same responses (generate() with the same vision-token suppression)
    prompts = [build_prompt(r, True) for r in rows]
    again = generate(model, processor, prompts, SamplingConfig(n=3, max_new_tokens=6, seed=11),
                     suppress_tokens=grpo_mod._vision_token_ids(model))
    assert ro.texts == [c.text for cs in again for c in cs]
    # the completion tokens are the generated ids: they decode to the texts and end at the first stop token
    tok = processor.tokenizer
    stops = {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")}
    for n in range(N):
        comp = ro.input_ids[n][ro.completion_mask[n].bool()].tolist()
        assert tok.decode(comp, skip_special_tokens=True) == ro.texts[n]
        assert not stops & set(comp[:-1])
        assert (comp[-1] not in stops and len(comp) == 6) if ro.truncated[n] else comp[-1] in stops
        assert not set(grpo_mod._vision_token_ids(model)) & set(comp)
    # the prompt part is the processor's encoding of the prompt (left padding stripped)
    enc = encode_prompts(processor, prompts)
    for n in range(N):
        keep = ro.attention_mask[n].bool() & ~ro.completion_mask[n].bool()
        i = n // 3
        assert ro.input_ids[n][keep].tolist() == enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
    # micro-batches (with their own images, padding columns dropped) give the full batch's log-probs
    with torch.no_grad():
        full, _ = token_logprobs(model, ro.input_ids, ro.attention_mask, ro.completion_mask,
                                 model_kwargs=ro.model_kwargs)
        for lo, hi in ((0, 4), (4, 6)):
            ids, am, cm, kw, c0 = rollout_rows(ro, lo, hi)
            part, _ = token_logprobs(model, ids, am, cm, model_kwargs=kw)
            torch.testing.assert_close(part, full[lo:hi, c0:], atol=2e-5, rtol=0)


# ---------------------------------------------------------------------------------------- 2


def test_steps_change_trainable_weights_and_log_every_metric(full_run, warm_model_dir):
    tmp, out, summary = full_run
    assert summary["completed"] and summary["steps"] == 4 and summary["reference_model"] is not None
    assert not (tmp / "full-state").exists()
    assert json.loads((out / "training_summary.json").read_text())["fingerprint"] == summary["fingerprint"]
    df = pl.read_parquet(tmp / "full.parquet")
    assert df.columns == list(METRIC_COLUMNS)
    assert df["step"].to_list() == [1, 2, 3, 4]
    for col in METRIC_COLUMNS:
        assert all(math.isfinite(v) for v in df[col].to_list()), col
    assert df["groups_with_signal"].max() > 0 and df["grad_norm"].max() > 0
    assert df["kl"][0] < 1e-6 and df["kl"][-1] > 1e-5  # the first rollout policy is the reference
    assert (df["time_generate"] + df["time_logprobs"] + df["time_update"] <= df["seconds"] + 1e-6).all()

    before, after = load_model(warm_model_dir)[0], load_model(out)[0]
    frozen = {id(p) for p in vision_parameters(before)}
    changed, frozen_changed = set(), set()
    for (name, p), q in zip(before.named_parameters(), after.parameters()):
        if not torch.equal(p, q):
            (frozen_changed if id(p) in frozen else changed).add(name)
    assert frozen and not frozen_changed
    assert any(n.endswith("lm_head.weight") for n in changed)


# ---------------------------------------------------------------------------------------- 3 and 5


@pytest.fixture(scope="module")
def learning_run(warm_model_dir, exists_rows, tmp_path_factory):
    """12 steps at kl_coef 0 on 'yes' questions only: answering A is learnable from the reward.

    (lr 2e-3 on this tiny model. With transformers' generate, 3e-3 rose by +0.43, +0.52, +0.41 over
    sampling seeds 0, 1, 2; synergy's decoder draws other samples from the same distribution
    (finished rows leave the batch, so the RNG stream maps to rows differently), and at 3e-3 seed 0
    then collapsed. At 2e-3 the last-3 minus first-3 mean reward was +0.32, +0.35, +0.33, +0.33,
    +0.46 over seeds 0-4.)
    """
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("synergy.train")
    handler, level = Keep(level=logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yes = [r for r in exists_rows if r["answer"] == "A"]
        cfg = _settings(learning_rate=2e-3, steps=12, prompts_per_step=4, mini_batch_size=2, micro_batch_size=8,
                        kl_coef=0.0, save_every_steps=100)
        tmp = tmp_path_factory.mktemp("grpo-learn")
        out, summary = _run(tmp, "learn", warm_model_dir, yes, cfg, seed=0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return pl.read_parquet(tmp / "learn.parquet"), out, summary, [r.getMessage() for r in records]


def test_reward_goes_up_on_a_learnable_task(learning_run):
    df, _, _, _ = learning_run
    r = df["reward"].to_list()
    first, last = sum(r[:3]) / 3, sum(r[-3:]) / 3
    assert last > first + 0.2, r
    assert df["accuracy"][-3:].mean() > df["accuracy"][:3].mean()


def test_kl_coef_zero_loads_no_reference_and_trains(learning_run, warm_model_dir):
    df, out, summary, messages = learning_run
    assert summary["reference_model"] is None
    assert any("no reference model" in m for m in messages)
    assert not any("reference model loaded" in m for m in messages)
    assert all(math.isnan(v) for v in df["kl"].to_list())
    before, after = _weights(warm_model_dir), _weights(out)
    assert any(not torch.equal(before[n], after[n]) for n in before)


# ---------------------------------------------------------------------------------------- 4


def test_resume_matches_uninterrupted_run(full_run, warm_model_dir, exists_rows):
    tmp, full_out, _ = full_run
    cfg = _settings()
    stopped = train_grpo(warm_model_dir, exists_rows, tmp / "resumed", log_path=tmp / "resumed.parquet",
                         state_dir=tmp / "resumed-state", cfg=cfg, stop_after_steps=3)
    assert stopped == {"completed": False, "step": 3}
    assert not (tmp / "resumed").exists() and not (tmp / "resumed.parquet").exists()
    assert [p.name for p in (tmp / "resumed-state").glob("step-*")] == ["step-000002"]  # step 3 is lost
    # a run with other settings (seed) ignores that state and starts over
    other = train_grpo(warm_model_dir, exists_rows, tmp / "resumed", log_path=tmp / "resumed.parquet",
                       state_dir=tmp / "resumed-state", cfg=cfg, seed=1, stop_after_steps=1)
    assert other == {"completed": False, "step": 1}

    summary = train_grpo(warm_model_dir, exists_rows, tmp / "resumed", log_path=tmp / "resumed.parquet",
                         state_dir=tmp / "resumed-state", cfg=cfg)
    assert summary["completed"] and summary["resumed_from_step"] == 2 and summary["steps"] == 4
    a, b = _weights(full_out), _weights(tmp / "resumed")
    assert max(float((a[n] - b[n]).abs().max()) for n in a) < 1e-4
    full_df, resumed_df = pl.read_parquet(tmp / "full.parquet"), pl.read_parquet(tmp / "resumed.parquet")
    assert resumed_df["step"].to_list() == [1, 2, 3, 4]
    assert resumed_df["reward"].to_list() == full_df["reward"].to_list()


# ---------------------------------------------------------------------------------------- 6


def test_equal_rewards_give_zero_gradient_and_unchanged_weights(tiny_model_dir, exists_rows, tmp_path):
    """All rewards 0 -> every advantage 0 -> zero policy gradient; kl_coef 0 and no weight decay -> no change."""
    cfg = _settings(learning_rate=1e-2, steps=1, accuracy_weight=0.0, format_weight=0.0, kl_coef=0.0,
                    weight_decay=0.0, max_new_tokens=6)
    out, summary = _run(tmp_path, "flat", tiny_model_dir, exists_rows, cfg)
    df = pl.read_parquet(tmp_path / "flat.parquet")
    assert df["groups_with_signal"].to_list() == [0.0]
    assert df["grad_norm"].to_list() == [0.0] and df["policy_loss"].to_list() == [0.0]
    before, after = _weights(tiny_model_dir), _weights(out)
    assert all(torch.equal(before[n], after[n]) for n in before)


# ---------------------------------------------------------------------------------------- divergence


def test_nan_loss_stops_with_last_good_state(tiny_model_dir, exists_rows, tmp_path, monkeypatch):
    real = grpo_mod.update.grpo_loss  # the module of the updates (synergy/train/grpo/update.py)
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 2:  # step 1 = 1 prompt x G=2 in micro-batches of 1: two losses
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(grpo_mod.update, "grpo_loss", poisoned)
    cfg = _settings(steps=3, prompts_per_step=1, mini_batch_size=1, num_generations=2, micro_batch_size=1,
                    max_new_tokens=4, kl_coef=0.0, save_every_steps=1)
    with pytest.raises(TrainingDiverged, match=r"at step 2.*step-000001"):
        _run(tmp_path, "nan", tiny_model_dir, exists_rows, cfg)
    assert (tmp_path / "nan-state" / "step-000001" / "trainer_state.json").is_file()
    assert not (tmp_path / "nan").exists()
