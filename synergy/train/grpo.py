"""GRPO of paper §2.2 with verl's definitions (notes/ecosystem.md §1.1, §1.6; notes/paper.md §2.3).

One training step, as verl's ``RayPPOTrainer`` with ``adv_estimator=grpo``, ``use_kl_loss=True``,
``kl_loss_type=low_var_kl``, ``loss_agg_mode=token-mean``, ``ppo_epochs=1``:

1. take ``prompts_per_step`` questions (verl ``data.train_batch_size``; paper 128);
2. sample ``num_generations`` (G, paper 8) responses per question at the rollout temperature;
3. reward each response with the one grader: ``accuracy_weight * correct + format_weight *
   format_ok`` (paper: 0.9 / 0.1); advantages per group (``losses.group_advantages``);
4. log-probs of the responses under the current policy ("old", no grad) and, when ``kl_coef > 0``,
   under the frozen reference model;
5. ``prompts_per_step // mini_batch_size`` optimiser updates (paper 128 / 64 = 2), each over the
   sequences of ``mini_batch_size`` prompts, run in micro-batches of ``micro_batch_size`` sequences
   whose losses are normalised by the mini-batch's total completion tokens, so the accumulated
   gradient is verl's token-mean over the mini-batch; gradient clipping, AdamW, lr schedule (core).

Deviations and choices (none changes the objective unless stated):

1. Rollouts come from ``synergy.generate.hf.generate`` (transformers ``generate``, CPU or GPU), or,
   with ``rollout_backend: vllm``, from an in-process vLLM engine whose weights are refreshed from
   the trainer after every step (``synergy.generate.vllm.RolloutEngine``; verl's hybrid engine and
   TRL's colocate mode do the same); the step's seed is a function of (run seed, step, process), so
   a resumed hf run samples exactly what the uninterrupted run sampled (vLLM: up to its batching
   numerics). Either way the completion ids are kept exactly as sampled (3.).
2. Old log-probs are recomputed by the trainer before the updates (same micro-batches as the
   updates, so the first update's ratio is exactly 1), never taken from the sampler: with two
   updates per rollout batch the second one is off-policy, and sampler/trainer numerics differ
   (ecosystem.md §6 pitfall 10).
3. The response token ids are kept exactly as generated: the ``generate`` calls are observed
   through a thin wrapper around the model, and their output ids (up to and including the first
   stop token) form the completion; nothing is re-tokenised from decoded text. The prompt part is
   the processor's encoding of the same prompt (checked against the ids the sampler saw), and the
   texts decoded from the kept ids are checked against ``generate``'s own texts.
4. The log-prob forward gets the same multimodal inputs the sampler got: ``mm_token_type_ids``
   (Qwen2.5-VL's 3-D M-RoPE positions) only if ``generate`` received it. The hf backend currently
   drops it, so sampler and trainer both use 1-D positions for image tokens; either way they
   agree to float error.
5. Truncated responses (no stop token within ``max_new_tokens``) are kept, every one of their
   tokens is trained, and they are rewarded as graded (a ``<think>`` that was cut off has no
   answer and no format credit); no overlong masking or penalty (verl's default). The share is
   logged as ``truncated_rate`` (ecosystem.md §6 pitfall 6).
6. Vision placeholder tokens (``<|image_pad|>``, ``<|video_pad|>``, ``<|vision_start|>``) are
   suppressed during sampling: one of them inside a response would break the multimodal forward
   ("image features and image tokens do not match", pitfall 2). For an instruct model this is a
   no-op; for a small random model the sampling distribution is the policy renormalised over the
   other tokens (the trainer's log-probs keep the full softmax).
7. Data order: one continuous stream over per-epoch shuffles seeded by (seed, epoch); a step may
   straddle two epochs (no ``drop_last``). ``drop_easy`` (paper §2.2 "w/o easiest") is applied by
   the caller with ``drop_easy_questions`` before training.
8. Precision: the policy keeps float32 master weights (bf16 autocast on GPU; a bf16 AdamW cannot
   represent 1e-6 updates); the reference model is a float32 copy run the same way. The final
   model is saved in the init checkpoint's dtype.
9. Metrics: ``entropy`` is the token mean of the old-log-prob pass's entropies and ``kl`` the token
   mean of k3(rollout policy || reference) from the same pass (NaN when no reference is loaded);
   ``policy_loss`` and ``clip_ratio`` come from the update passes (verl ``pg_loss``, ``pg_clipfrac``).
   No entropy bonus (verl ``entropy_coeff`` 0).
10. Several processes (accelerate): every process samples, scores and trains its share of each
    mini-batch's prompts; the token normaliser and the metrics are summed over processes and the
    loss is multiplied by the process count (data-parallel averaging). Only one process is tested.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import Tensor

from synergy.config import GRPOSettings
from synergy.data.schema import DataError, validate_rows
from synergy.generate.hf import SamplingConfig, encode_prompts, generate, prompt_texts
from synergy.generate.decode import decode
from synergy.grading import Grader, grade_row, reward
from synergy.models import freeze_vision, load_model, save_model
from synergy.prompts import Prompt, build_prompt
from synergy.train.sft import END_OF_TURN
from synergy.train.core import (
    Checkpointer,
    MetricsLog,
    OptimSettings,
    TrainingDiverged,
    build_accelerator,
    build_optimizer,
    check_finite,
    check_grading,
    explain_oom,
    fingerprint,
    resume_settings,
)
from synergy.train.losses import group_advantages, grpo_loss, kl_k3, token_logprobs

log = logging.getLogger("synergy.train")

__all__ = ["HYBRID_COLUMNS", "METRIC_COLUMNS", "HybridPlan", "Rollouts", "collect_rollouts", "drop_easy_questions",
           "prefix_fraction", "rollout_rows", "train_grpo", "zero_pass_ids"]

METRIC_COLUMNS = (
    "step", "reward", "accuracy", "format_rate", "entropy", "response_length", "truncated_rate", "clip_ratio", "kl",
    "policy_loss", "grad_norm", "lr", "groups_with_signal", "num_prompts", "seconds", "time_generate",
    "time_logprobs", "time_update", "grader_timeouts", "grader_errors",
)
"""Columns of the per-step metrics table (``log_path``), in order."""
HYBRID_COLUMNS = ("sft_questions", "sft_tokens", "sft_loss", "prefix_fraction")
"""Extra columns of a hybrid arm (paper §3.1): questions routed to SFT / a prefix, SFT tokens, their NLL, prefix share."""

_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id")


# ----------------------------------------------------------------------------------------------
# Rollouts


@dataclass
class Rollouts:
    """One step's batch: G sequences per prompt, prompt-major (sequence ``i * G + j`` is sample j of prompt i).

    ``input_ids``/``attention_mask``/``completion_mask``/``sft_weight`` are ``[N, L]``: the prompt
    (processor encoding, image placeholders expanded, plus any assistant prefix) followed by the
    completion ids exactly as generated, left-padded. ``completion_mask`` marks the tokens that get
    the RL loss (the completions, stop token included, of RL-routed groups); ``sft_weight`` is the
    SFT weight of each token (0 = no SFT loss): an external trace, or its prefix (paper §3.1).
    ``model_kwargs`` holds the per-sequence images (``pixel_values``, ``image_grid_thw`` in row
    order, ``images_per_row``) and ``mm_token_type_ids`` when the processor returns it; empty for
    text-only batches.
    ``rewards`` is ``[num_prompts, G]``: the rewards the advantages are computed from (guided
    rollouts are rewarded on prefix + continuation; SFT-routed groups have 0). ``routes`` says per
    prompt what it was trained with: ``rl``, ``sft`` (interleaved, or a progressive prefix that is
    the whole trace) or ``prefix`` (prefix-guided rollouts).
    ``sample_rewards``, ``correct``, ``format_ok``, ``truncated``, ``lengths`` (completion tokens)
    and ``texts`` describe the policy's own unguided samples of the step (all sequences for pure
    GRPO; the metrics ``reward``/``accuracy``/... are computed from them).
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    model_kwargs: dict
    rewards: Tensor
    correct: Tensor
    format_ok: Tensor
    truncated: Tensor
    lengths: Tensor
    texts: list[str] = field(default_factory=list)
    sft_weight: Tensor | None = None
    sample_rewards: Tensor | None = None
    routes: list[str] = field(default_factory=list)
    prefix_fraction: float = float("nan")

    def __post_init__(self):
        if self.sft_weight is None:
            self.sft_weight = torch.zeros(self.input_ids.shape, dtype=torch.float32)
        if self.sample_rewards is None:
            self.sample_rewards = self.rewards.reshape(-1)
        if not self.routes:
            self.routes = ["rl"] * int(self.rewards.shape[0])

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def trained_mask(self) -> Tensor:
        """Tokens that get any loss (RL or SFT), ``[N, L]`` bool."""
        return self.completion_mask.bool() | (self.sft_weight > 0)


@dataclass(frozen=True)
class HybridPlan:
    """What one step of a hybrid arm (paper §3.1) does with its zero-pass questions.

    ``mode``: ``interleaved`` (the external trace gets an SFT loss of weight ``sft_weight``) or
    ``progressive`` (the first ``prefix_fraction`` of the trace's tokens is given as a prefix with
    SFT weight ``sft_weight`` and G rollouts continue it; a prefix that is the whole trace is a
    pure SFT example, an empty one leaves the question to plain GRPO). ``offline_zero``: positions
    (in the step's rows) known to be zero-pass from the base model's rollouts (``zero_pass:
    offline``); they are not sampled unguided. With ``online`` a question is zero-pass when none of
    its G unguided rollouts of this step is correct.
    """

    mode: str
    sft_weight: float
    prefix_fraction: float = 1.0
    online: bool = True
    offline_zero: frozenset = frozenset()


class _RecordingModel:
    """Wraps a model for ``generate`` (its ``synergy_generate`` hook): records every call's inputs and output ids, suppresses tokens.

    Every other attribute is the wrapped model's (``device``, ``generation_config``, ...).
    """

    def __init__(self, model, suppress: Sequence[int]):
        self._model = model
        self._suppress = sorted(set(int(t) for t in suppress))
        self.calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def synergy_generate(self, **kwargs):
        """What ``synergy.generate.hf.generate`` calls for each batch: ``decode`` on the wrapped model, recorded."""
        if self._suppress:
            existing = kwargs.get("suppress_tokens") or getattr(self._model.generation_config, "suppress_tokens", None)
            kwargs["suppress_tokens"] = sorted(set(self._suppress) | set(existing or ()))
        out = decode(self._model, **kwargs)
        ids = out.sequences if hasattr(out, "sequences") else out
        self.calls.append({
            "input_ids": kwargs["input_ids"].detach().cpu(),
            "attention_mask": kwargs["attention_mask"].detach().cpu(),
            "output": ids.detach().cpu(),
            "mm_token_type_ids": "mm_token_type_ids" in kwargs,
        })
        return out


def _config_value(model, key: str):
    cfg = model.config
    value = getattr(cfg, key, None)
    if value is None:
        value = getattr(getattr(cfg, "text_config", None), key, None)
    return value


def _vision_token_ids(model) -> list[int]:
    return [int(v) for v in (_config_value(model, k) for k in _VISION_TOKEN_KEYS) if v is not None]


def _stop_ids(model, processor) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def _sample(model, processor, prompts, cfg: GRPOSettings, step_seed: int) -> dict:
    """Sample G completions per prompt; return the prompts' ids and the completions' ids exactly as generated."""
    G, P = cfg.num_generations, len(prompts)
    sampling = SamplingConfig(n=G, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                              max_new_tokens=cfg.max_new_tokens, seed=int(step_seed))
    vision_ids = _vision_token_ids(model)
    sampler = _RecordingModel(model, vision_ids)
    completions = generate(sampler, processor, prompts, sampling)

    enc = encode_prompts(processor, prompts)  # the same encoding generate() used, all prompts at once
    enc_mask = enc["attention_mask"].bool()
    prompt_ids = [enc["input_ids"][i][enc_mask[i]].tolist() for i in range(P)]
    slots: dict[tuple, list[int]] = defaultdict(list)  # identical prompts share a key
    for i, ids in enumerate(prompt_ids):
        slots[tuple(ids)].append(i)
    stop = torch.tensor(_stop_ids(model, processor))
    comp: list[list[list[int]]] = [[] for _ in range(P)]
    ended: list[list[bool]] = [[] for _ in range(P)]
    for call in sampler.calls:
        inp, mask, out = call["input_ids"], call["attention_mask"].bool(), call["output"]
        k = out.shape[0] // inp.shape[0]  # num_return_sequences: output row s belongs to input row s // k
        for s in range(out.shape[0]):
            key = tuple(inp[s // k][mask[s // k]].tolist())
            i = next((i for i in slots.get(key, ()) if len(comp[i]) < G), None)
            if i is None:
                raise RuntimeError("a generated sequence matches no prompt of the batch (or too many samples came "
                                   "back): synergy.generate.hf.generate and collect_rollouts disagree")
            gen = out[s, inp.shape[1]:]
            hits = torch.isin(gen, stop).nonzero()
            n = int(hits[0]) + 1 if hits.numel() else gen.shape[0]
            comp[i].append(gen[:n].tolist())
            ended[i].append(bool(hits.numel()))
    if any(len(c) != G for c in comp):
        raise RuntimeError(f"expected {G} samples per prompt, got {[len(c) for c in comp]}")
    comp_ids = [c for per_prompt in comp for c in per_prompt]
    bad = set(vision_ids) & {t for c in comp_ids for t in c}
    if bad:
        raise RuntimeError(f"a completion contains vision placeholder tokens {sorted(bad)} despite suppression")
    texts = processor.tokenizer.batch_decode(comp_ids, skip_special_tokens=True)
    for idx in slots.values():  # samples of identical prompts are interchangeable: compare as multisets
        mine = Counter(texts[i * G + j] for i in idx for j in range(G))
        if mine != Counter(c.text for i in idx for c in completions[i]):
            raise RuntimeError("decoded rollout ids differ from generate()'s texts: the recorded ids are not the "
                               "sampled responses")
    return {"prompt_ids": prompt_ids, "comp_ids": comp_ids, "texts": texts,
            "ended": [e for per_prompt in ended for e in per_prompt], "stop": stop}


def _prefix_token_count(processor, prompt: Prompt) -> int:
    """How many trailing tokens of the prompt's encoding are its assistant prefix.

    Counted as the tokens after the longest common prefix of the encodings with and without the
    prefix, so a token that merges across the boundary counts as a prefix token.
    """
    if not prompt.assistant_prefix:
        return 0
    bare = Prompt(prompt.messages, prompt.images)
    a, b = processor.tokenizer(prompt_texts(processor, [bare, prompt]), add_special_tokens=False)["input_ids"]
    c = 0
    while c < min(len(a), len(b)) and a[c] == b[c]:
        c += 1
    return len(b) - c


def _pack(processor, variants: Sequence[Prompt], seq_variant: Sequence[int], comp_ids: Sequence[list[int]],
          seq_rl: Sequence[bool], seq_prefix_weight: Sequence[float], stop: Tensor):
    """Sequence n = prompt variant ``seq_variant[n]`` + ``comp_ids[n]``, as one left-padded batch with its images.

    Returns (input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, variant_ids):
    completion tokens of sequences with ``seq_rl`` are RL tokens; the assistant-prefix tokens of a
    sequence with ``seq_prefix_weight > 0`` get that SFT weight.
    """
    enc = encode_prompts(processor, variants)
    enc_mask = enc["attention_mask"].bool()
    V, N = len(variants), len(comp_ids)
    variant_ids = [enc["input_ids"][v][enc_mask[v]].tolist() for v in range(V)]
    n_prefix = [_prefix_token_count(processor, p) for p in variants]
    pad_id = processor.tokenizer.pad_token_id
    pad_id = int(stop[0]) if pad_id is None else int(pad_id)
    L = max(len(variant_ids[seq_variant[n]]) + len(comp_ids[n]) for n in range(N))
    input_ids = torch.full((N, L), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(N, L, dtype=torch.long)
    completion_mask = torch.zeros(N, L, dtype=torch.long)
    sft_weight = torch.zeros(N, L, dtype=torch.float32)
    has_mm = "mm_token_type_ids" in enc
    mm = torch.zeros(N, L, dtype=torch.long) if has_mm else None
    for n in range(N):
        v = seq_variant[n]
        p, c = variant_ids[v], comp_ids[n]
        T = len(p) + len(c)
        input_ids[n, L - T:] = torch.tensor(p + c, dtype=torch.long)
        attention_mask[n, L - T:] = 1
        if seq_rl[n] and c:
            completion_mask[n, L - len(c):] = 1
        if seq_prefix_weight[n] > 0 and n_prefix[v]:
            sft_weight[n, L - len(c) - n_prefix[v]: L - len(c)] = float(seq_prefix_weight[n])
        if mm is not None:
            mm[n, L - T: L - len(c)] = enc["mm_token_type_ids"][v][enc_mask[v]]

    model_kwargs: dict[str, Any] = {}
    if enc.get("image_grid_thw") is not None:
        grid, pixels = enc["image_grid_thw"], enc["pixel_values"]
        img_off = [0]
        for p in variants:
            img_off.append(img_off[-1] + len(p.images))
        patch_off = [0] + grid.prod(-1).cumsum(0).tolist()
        pv, gr, per_row = [], [], []
        for n in range(N):
            a, b = img_off[seq_variant[n]], img_off[seq_variant[n] + 1]
            pv.append(pixels[patch_off[a]: patch_off[b]])
            gr.append(grid[a:b])
            per_row.append(b - a)
        model_kwargs = {"pixel_values": torch.cat(pv), "image_grid_thw": torch.cat(gr), "images_per_row": per_row}
    if mm is not None:
        model_kwargs["mm_token_type_ids"] = mm
    return input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, variant_ids


def _trace(row: Mapping) -> str:
    text = row.get("response")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"row id={row.get('id')!r}: no response; hybrid SFT & RL needs the question's external trace")
    return text.lstrip("\n")


def collect_rollouts(model, processor, rows: Sequence[Mapping], cfg: GRPOSettings, *, step_seed: int, grader: Grader,
                     image_position: str, hybrid: HybridPlan | None = None, sampler=None) -> Rollouts:
    """Sample ``cfg.num_generations`` responses per row, grade them, and build the log-prob batch.

    Sampling: ``synergy.generate.hf.generate`` with ``cfg``'s temperature / top-p / top-k /
    max_new_tokens and seed ``step_seed``; prompts carry the reasoning instruction when
    ``cfg.reasoning_instruction``. Grading: ``grade_row`` with ``grader``, reward
    ``cfg.accuracy_weight * correct + cfg.format_weight * format_ok``. With ``hybrid`` the
    zero-pass questions are routed as ``HybridPlan`` says (prefix-guided rollouts are sampled
    with seed ``step_seed + 1``). The returned tensors are on the CPU. Raises ``RuntimeError`` if
    the recorded generate outputs cannot be matched to the prompts or disagree with
    ``generate``'s texts, ``DataError`` if a routed question has no trace. ``sampler`` (e.g.
    ``RolloutEngine.sample``, ``grpo.rollout_backend: vllm``) replaces the hf sampler: called as
    ``sampler(processor, prompts, cfg, seed)`` it returns what ``_sample`` returns.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("collect_rollouts needs at least one row")
    if not cfg.temperature > 0:
        raise ValueError(f"grpo temperature must be > 0 (got {cfg.temperature}): greedy rollouts are identical, "
                         "so every group would have zero advantage")
    G, P = cfg.num_generations, len(rows)
    tok = processor.tokenizer
    prompts = [build_prompt(r, cfg.reasoning_instruction, image_position) for r in rows]
    offline = set(hybrid.offline_zero) if hybrid is not None else set()
    variants: list[Prompt] = list(prompts)  # variant i < P is prompt i itself
    seq_variant = [n // G for n in range(P * G)]
    comp: list[list[int]] = [[] for _ in range(P * G)]
    ended = [True] * (P * G)
    texts = [""] * (P * G)
    grades: list = [None] * (P * G)
    seq_rl = [True] * (P * G)
    seq_w = [0.0] * (P * G)
    routes = ["rl"] * P
    sampled_ids: dict[int, list[int]] = {}  # variant -> prompt ids the sampler encoded
    own: list[tuple] = []  # (sequence, grade, ended, length, text) of the policy's own unguided samples (metrics)

    def run(batch: list[int], seed: int, prefix: dict[int, str]) -> None:
        batch_prompts = [variants[v] for v in batch]
        s = (sampler(processor, batch_prompts, cfg, seed) if sampler is not None
             else _sample(model, processor, batch_prompts, cfg, seed))
        for k, v in enumerate(batch):
            sampled_ids[v] = s["prompt_ids"][k]
            i = v if v < P else variant_prompt[v]
            for j in range(G):
                n = i * G + j
                comp[n], ended[n] = s["comp_ids"][k * G + j], s["ended"][k * G + j]
                texts[n] = prefix.get(v, "") + s["texts"][k * G + j]
                grades[n] = grade_row(grader, texts[n], rows[i])
                seq_variant[n] = v
                if v not in prefix:  # the policy's own, unguided sample
                    own.append((n, grades[n], ended[n], len(comp[n]), texts[n]))
        stop_holder.append(s["stop"])

    variant_prompt: dict[int, int] = {}
    stop_holder: list[Tensor] = []
    plain = [i for i in range(P) if i not in offline]
    if plain:
        run(plain, step_seed, {})
    if hybrid is not None:
        zero = sorted(offline if not hybrid.online else
                      {i for i in plain if not any(grades[i * G + j].correct for j in range(G))})
        guided: list[int] = []
        prefixes: dict[int, str] = {}
        for i in zero:
            trace = _trace(rows[i])
            if hybrid.mode == "interleaved":
                k_tok, full = None, True
            else:
                trace_ids = tok(trace, add_special_tokens=False)["input_ids"]
                k_tok = int(round(hybrid.prefix_fraction * len(trace_ids)))
                full = k_tok >= len(trace_ids)
            if full:  # the whole trace + end of turn is an SFT example on sequence 0; the other G-1 rows are idle
                routes[i] = "sft"
                variants.append(Prompt(prompts[i].messages, prompts[i].images, assistant_prefix=trace + END_OF_TURN))
                v = len(variants) - 1
                variant_prompt[v] = i
                for j in range(G):
                    n = i * G + j
                    comp[n], seq_rl[n], ended[n] = [], False, True
                    seq_variant[n] = v if j == 0 else i
                seq_w[i * G] = hybrid.sft_weight
            elif k_tok == 0:  # the prefix has faded out: plain GRPO (offline questions still need their samples)
                if i in offline:
                    guided.append(i)
                    variant_prompt[i] = i
            else:
                routes[i] = "prefix"
                prefix = tok.decode(trace_ids[:k_tok], skip_special_tokens=False)
                variants.append(Prompt(prompts[i].messages, prompts[i].images, assistant_prefix=prefix))
                v = len(variants) - 1
                variant_prompt[v] = i
                prefixes[v] = prefix
                guided.append(v)
                seq_w[i * G] = hybrid.sft_weight
        if guided:
            run(guided, step_seed + 1, prefixes)
    input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, variant_ids = _pack(
        processor, variants, seq_variant, comp, seq_rl, seq_w,
        stop_holder[0] if stop_holder else torch.tensor(_stop_ids(model, processor)))
    for v, ids in sampled_ids.items():
        if variant_ids[v] != ids:
            raise RuntimeError(f"prompt variant {v}: the batch's prompt ids differ from the ids the sampler saw")
    rewards = torch.zeros(P, G, dtype=torch.float32)
    for n, g in enumerate(grades):
        if g is not None and seq_rl[n]:
            rewards[n // G, n % G] = reward(g, cfg.accuracy_weight, cfg.format_weight)
    own.sort(key=lambda r: r[0])
    return Rollouts(
        input_ids=input_ids,
        attention_mask=attention_mask,
        completion_mask=completion_mask,
        model_kwargs=model_kwargs,
        rewards=rewards,
        correct=torch.tensor([r[1].correct for r in own], dtype=torch.bool),
        format_ok=torch.tensor([r[1].format_ok for r in own], dtype=torch.bool),
        truncated=torch.tensor([not r[2] for r in own], dtype=torch.bool),
        lengths=torch.tensor([r[3] for r in own], dtype=torch.long),
        texts=[r[4] for r in own],
        sft_weight=sft_weight,
        sample_rewards=torch.tensor([reward(r[1], cfg.accuracy_weight, cfg.format_weight) for r in own],
                                    dtype=torch.float32),
        routes=routes,
        prefix_fraction=hybrid.prefix_fraction if hybrid is not None and hybrid.mode == "progressive" else float("nan"),
    )


def _select(ro: Rollouts, idx: Sequence[int], device=None) -> tuple[Tensor, Tensor, Tensor, Tensor, dict, int]:
    """Sequences ``idx`` (ascending) of ``ro`` as a forward batch with all-padding columns dropped.

    Returns ``(input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, first_column)``.
    """
    idx = list(idx)
    sel = torch.tensor(idx, dtype=torch.long)
    am = ro.attention_mask[sel]
    c0 = int(am.any(0).nonzero()[0])
    kw: dict[str, Any] = {}
    mk = ro.model_kwargs
    if mk.get("image_grid_thw") is not None:
        per_row = mk["images_per_row"]
        img_off = [0]
        for c in per_row:
            img_off.append(img_off[-1] + c)
        patch_off = [0] + mk["image_grid_thw"].prod(-1).cumsum(0).tolist()
        images = [k for n in idx for k in range(img_off[n], img_off[n + 1])]
        if images:
            kw["image_grid_thw"] = mk["image_grid_thw"][torch.tensor(images)]
            kw["pixel_values"] = torch.cat([mk["pixel_values"][patch_off[k]: patch_off[k + 1]] for k in images])
    if mk.get("mm_token_type_ids") is not None:
        kw["mm_token_type_ids"] = mk["mm_token_type_ids"][sel, c0:]
    out = (ro.input_ids[sel, c0:], am[:, c0:], ro.completion_mask[sel, c0:], ro.sft_weight[sel, c0:])
    if device is not None:
        out = tuple(t.to(device) for t in out)
        kw = {k: v.to(device) for k, v in kw.items()}
    return (*out, kw, c0)


def rollout_rows(ro: Rollouts, lo: int, hi: int, device=None) -> tuple[Tensor, Tensor, Tensor, dict, int]:
    """Sequences ``lo:hi`` of ``ro`` as a forward batch with all-padding columns dropped.

    Returns ``(input_ids, attention_mask, completion_mask, model_kwargs, first_column)``: the
    tensors cover columns ``first_column:`` of ``ro``'s ``[N, L]`` layout; ``model_kwargs`` holds
    those rows' images (and ``mm_token_type_ids``), moved to ``device`` when given.
    """
    ids, am, cm, _, kw, c0 = _select(ro, range(lo, hi), device)
    return ids, am, cm, kw, c0


# ----------------------------------------------------------------------------------------------
# Data


def drop_easy_questions(rows: Sequence[Mapping], samples: pl.DataFrame, num_generations: int) -> tuple[list, int]:
    """Paper §2.2 "w/o easiest": drop the rows the base model answered correctly in all G rollouts.

    ``samples`` has one row per rollout with columns ``id`` and ``correct`` (e.g. the output of
    rule ``sample_train_pass_rates``). A question with more than ``num_generations`` rollouts is
    judged on its first ``num_generations`` (by the ``sample`` column when present, else in frame
    order). Returns (kept rows in their order, number dropped). A row with fewer than
    ``num_generations`` rollouts raises ``ValueError`` naming it.
    """
    missing_cols = {"id", "correct"} - set(samples.columns)
    if missing_cols:
        raise ValueError(f"samples frame lacks columns {sorted(missing_cols)}")
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    s = samples.with_row_index("_order")
    s = s.sort(["id", "sample", "_order"] if "sample" in s.columns else ["id", "_order"])
    per_id = s.group_by("id", maintain_order=True).agg(
        pl.len().alias("n"), pl.col("correct").head(num_generations).cast(pl.Int64).sum().alias("passes")
    )
    stats = {r["id"]: (r["n"], r["passes"]) for r in per_id.iter_rows(named=True)}
    kept, dropped = [], 0
    for row in rows:
        n, passes = stats.get(row["id"], (0, 0))
        if n < num_generations:
            raise ValueError(f"row id={row['id']!r} has {n} base-model rollouts in the samples, "
                             f"need {num_generations} to decide whether it is easy")
        if passes == num_generations:
            dropped += 1
        else:
            kept.append(row)
    log.info("drop_easy: dropped %d of %d questions solved in all %d rollouts", dropped, len(rows), num_generations)
    return kept, dropped


@functools.lru_cache(maxsize=8)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch * 7_919 + 17).shuffle(order)
    return tuple(order)


def step_row_indices(num_rows: int, prompts_per_step: int, seed: int, step: int) -> list[int]:
    """Indices of step ``step``'s prompts (0-based step): a stream over per-epoch shuffles of the rows."""
    out = []
    for k in range(step * prompts_per_step, (step + 1) * prompts_per_step):
        epoch, pos = divmod(k, num_rows)
        out.append(_epoch_order(num_rows, seed, epoch)[pos])
    return out


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The sampling seed of (run seed, step, process)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729 + 0x6790) % (2**31 - 1)


# ----------------------------------------------------------------------------------------------
# Training


@dataclass
class _Run:
    """What the steps of one run share."""

    cfg: GRPOSettings
    accelerator: Any
    model: Any  # as prepared by accelerate (the module itself on one process); used for the updates
    policy: Any  # the unwrapped module: generation, no-grad passes, saving
    ref: Any  # frozen reference model, or None when kl_coef == 0
    opt: Any
    sched: Any
    checkpointer: Checkpointer
    updates: list[list[tuple[int, int]]]  # per update: its micro-batches' sequence ranges in the step batch
    use_deepspeed: bool

    def allsum(self, values: Sequence[float]) -> list[float]:
        """Sum over processes (identity on one process)."""
        if self.accelerator.num_processes == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()


def _checkpoint_dtype(path) -> torch.dtype:
    """The dtype a checkpoint folder was saved in (config.json), float32 when unknown."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return torch.float32
    for source in (cfg, cfg.get("text_config") or {}):
        name = source.get("dtype") or source.get("torch_dtype")
        if isinstance(name, str) and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
    return torch.float32


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def _micro_plan(run: _Run, ro: Rollouts) -> list[list[list[int]]]:
    """Per update, the sequence indices of each micro-batch.

    Sequences with no trained token (the idle rows of an SFT-routed group) are left out and the
    rest are cut into ``micro_batch_size`` chunks; an update with nothing to train keeps one row
    (zero loss) so that every process runs its synchronising backward. With DeepSpeed the fixed
    contiguous micro-batches are kept (its engine counts micro-steps).
    """
    trained = ro.trained_mask.any(1).tolist()
    plan = []
    for micro in run.updates:
        if run.use_deepspeed:
            plan.append([list(range(lo, hi)) for lo, hi in micro])
            continue
        lo_u, hi_u = micro[0][0], micro[-1][1]
        active = [n for n in range(lo_u, hi_u) if trained[n]] or [lo_u]
        mbs = run.cfg.micro_batch_size
        plan.append([active[a: a + mbs] for a in range(0, len(active), mbs)])
    return plan


def _score(run: _Run, ro: Rollouts, plan) -> tuple[Tensor, Tensor | None, Tensor]:
    """Old log-probs, reference log-probs (None without a reference) and entropies, ``[N, L]`` on the CPU.

    Computed in the micro-batches the updates will use, so the first update sees ratio 1 exactly.
    """
    N, L = ro.input_ids.shape
    old, ent = torch.zeros(N, L), torch.zeros(N, L)
    ref = torch.zeros(N, L) if run.ref is not None else None
    device = run.accelerator.device
    with torch.no_grad(), run.accelerator.autocast():
        for idx in (c for update in plan for c in update):
            ids, am, cm, sw, kw, c0 = _select(ro, idx, device)
            mask = cm.bool() | (sw > 0)
            sel = torch.tensor(idx)
            lp, e = token_logprobs(run.policy, ids, am, mask, model_kwargs=kw, with_entropy=True)
            old[sel, c0:], ent[sel, c0:] = lp.cpu(), e.cpu()
            if ref is not None:
                ref[sel, c0:] = token_logprobs(run.ref, ids, am, mask, model_kwargs=kw)[0].cpu()
    return old, ref, ent


def _diverged(run: _Run, what: str, value: float, step: int) -> TrainingDiverged:
    last = run.checkpointer.latest()
    where = f"the last good state is {last[0]} (step {last[1]['step']})" if last else "no state was saved yet"
    return TrainingDiverged(f"{what} became {value} at step {step}; training stopped, {where}. "
                            "A rerun with the same settings resumes from it (a transient fault); with other settings "
                            "(e.g. a lower learning rate) the arm starts over.")


def _update(run: _Run, ro: Rollouts, advantages: Tensor, old: Tensor, ref: Tensor | None, step: int, plan) -> dict:
    """The step's optimiser updates; returns the update metrics (policy_loss, clip_ratio, grad_norm, lr, sft_loss)."""
    cfg, acc, model = run.cfg, run.accelerator, run.model
    device = acc.device
    trained = ro.trained_mask
    cmask = ro.completion_mask.bool()
    world = acc.num_processes
    pg_sum = rl_tok_sum = sft_sum = sft_tok_sum = 0.0
    clip_ratios, grad_norms, lrs = [], [], []
    model.train()
    for micro, chunks in zip(run.updates, plan):
        lo_u, hi_u = micro[0][0], micro[-1][1]
        # verl's token-mean over the mini-batch's active tokens, RL and SFT alike (losses.grpo_loss)
        normalizer = max(run.allsum([float(trained[lo_u:hi_u].sum())])[0], 1.0)
        n_rl_upd = float(cmask[lo_u:hi_u].sum())
        upd_pg = upd_clip = upd_sft = upd_sft_tok = 0.0
        for k, idx in enumerate(chunks):
            ids, am, cm, sw, kw, c0 = _select(ro, idx, device)
            sel = torch.tensor(idx)
            if run.use_deepspeed:
                ctx = acc.accumulate(model)
            else:
                ctx = contextlib.nullcontext() if k == len(chunks) - 1 else acc.no_sync(model)
            with ctx, acc.autocast():
                sft_mask = sw > 0
                logp, _ = token_logprobs(model, ids, am, cm.bool() | sft_mask, model_kwargs=kw)
                ref_lp = ref[sel, c0:].to(device) if ref is not None else None
                out = grpo_loss(logp, old[sel, c0:].to(device), ref_lp, advantages[sel].to(device), cm,
                                clip_low=cfg.clip_low, clip_high=cfg.clip_high, clip_ratio_c=cfg.clip_ratio_c,
                                kl_coef=cfg.kl_coef, sft_mask=sft_mask, sft_weight=sw, normalizer=normalizer)
                check_finite(out.loss, step, run.checkpointer)
                # backward divides by gradient_accumulation_steps (DeepSpeed: in its engine) and data
                # parallelism averages over processes; undo both so the gradient is Σ_tokens / normalizer
                acc.backward(out.loss * world * acc.gradient_accumulation_steps)
            n_rl, n_sft = float(cm.sum()), float(sft_mask.sum())
            upd_pg += float(out.policy_loss) * n_rl
            upd_clip += float(out.clip_fraction) * n_rl
            upd_sft += float(out.sft_loss) * n_sft
            upd_sft_tok += n_sft
        norm = acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
        norm = float(norm) if norm is not None else float("nan")
        if not math.isfinite(norm) and not run.use_deepspeed:
            raise _diverged(run, "the gradient norm", norm, step)
        lrs.append(float(run.opt.param_groups[0]["lr"]))
        run.opt.step()
        run.sched.step()
        run.opt.zero_grad(set_to_none=True)
        upd_pg, upd_clip, upd_sft, upd_sft_tok, n_rl_upd = run.allsum([upd_pg, upd_clip, upd_sft, upd_sft_tok, n_rl_upd])
        pg_sum += upd_pg
        rl_tok_sum += n_rl_upd
        sft_sum += upd_sft
        sft_tok_sum += upd_sft_tok
        clip_ratios.append(upd_clip / max(n_rl_upd, 1.0))
        grad_norms.append(norm)
    model.eval()
    return {"policy_loss": pg_sum / max(rl_tok_sum, 1.0), "clip_ratio": _mean(clip_ratios),
            "grad_norm": _mean(grad_norms), "lr": lrs[-1],
            "sft_loss": sft_sum / sft_tok_sum if sft_tok_sum else float("nan"), "sft_tokens": int(sft_tok_sum)}


def _rollout_metrics(run: _Run, ro: Rollouts, entropy: Tensor, old: Tensor, ref: Tensor | None) -> dict:
    """Reward, accuracy, format, lengths (the policy's own samples), entropy, KL and signal share (RL tokens/groups)."""
    cmask = ro.completion_mask.bool()
    rl_groups = [i for i, r in enumerate(ro.routes) if r != "sft"]
    groups = ro.rewards[rl_groups] if rl_groups else ro.rewards[:0]
    signal = float((groups.max(dim=1).values != groups.min(dim=1).values).sum()) if rl_groups else 0.0
    kl_sum = float(kl_k3(old, ref)[cmask].sum()) if ref is not None else 0.0
    (r, c, f, t, length, n, ent, tok, kl, sig, g, routed, prompts) = run.allsum([
        float(ro.sample_rewards.sum()), float(ro.correct.sum()), float(ro.format_ok.sum()), float(ro.truncated.sum()),
        float(ro.lengths.sum()), float(ro.correct.numel()), float(entropy[cmask].sum()), float(cmask.sum()), kl_sum,
        signal, float(len(rl_groups)), float(sum(r != "rl" for r in ro.routes)), float(len(ro.routes)),
    ])
    per = (lambda x: x / n) if n else (lambda x: float("nan"))
    return {"reward": per(r), "accuracy": per(c), "format_rate": per(f), "entropy": ent / max(tok, 1.0),
            "response_length": per(length), "truncated_rate": per(t),
            "kl": kl / max(tok, 1.0) if ref is not None else float("nan"),
            "groups_with_signal": sig / g if g else float("nan"), "num_prompts": int(prompts),
            "sft_questions": int(routed), "prefix_fraction": ro.prefix_fraction}


def prefix_fraction(step: int, steps: int, schedule: str = "linear", fade_fraction: float = 1.0) -> float:
    """Share of a zero-pass question's trace given as prefix at 0-based ``step`` (progressive, paper §3.1).

    1 (the whole trace) at step 0, falling to 0 at step ``fade - 1`` with ``fade = round(fade_fraction
    * steps)`` and 0 after it: ``linear`` (LUFFY) ``1 - p`` or ``cosine`` (Prefix-RFT)
    ``(1 + cos(pi p)) / 2`` with progress ``p = step / (fade - 1)``.
    """
    fade = max(1, round(fade_fraction * steps))
    p = min(1.0, step / (fade - 1)) if fade > 1 else 1.0
    if schedule == "linear":
        return 1.0 - p
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"prefix schedule must be linear or cosine, got {schedule!r}")


def zero_pass_ids(samples: pl.DataFrame, num_generations: int) -> set:
    """Ids the base model never solved in its first ``num_generations`` rollouts (``zero_pass: offline``)."""
    s = samples.with_row_index("_order")
    s = s.sort(["id", "sample", "_order"] if "sample" in s.columns else ["id", "_order"])
    per_id = s.group_by("id").agg(pl.len().alias("n"),
                                  pl.col("correct").head(num_generations).cast(pl.Int64).sum().alias("passes"))
    short = per_id.filter(pl.col("n") < num_generations)
    if short.height:
        raise ValueError(f"row id={short['id'][0]!r} has {short['n'][0]} base-model rollouts, need {num_generations}")
    return set(per_id.filter(pl.col("passes") == 0)["id"].to_list())


def _setup(init_dir, rows: list, cfg: GRPOSettings, *, state_dir, seed: int, ref_dir, image_position: str):
    """Accelerator, policy (+ frozen vision), optimiser, schedule, reference, checkpointer; restores a state."""
    P, G = cfg.prompts_per_step, cfg.num_generations
    if not rows:
        raise ValueError("train_grpo: no training rows")
    if len(rows) < P:
        raise ValueError(f"train_grpo: {len(rows)} training rows, fewer than prompts_per_step={P}")
    if cfg.kl_coef < 0 or not cfg.temperature > 0:
        raise ValueError(f"grpo needs kl_coef >= 0 and temperature > 0, got {cfg.kl_coef} and {cfg.temperature}")
    if min(cfg.micro_batch_size, cfg.save_every_steps, cfg.steps) < 1:
        raise ValueError("grpo steps, micro_batch_size and save_every_steps must be >= 1")
    updates_per_step = P // cfg.mini_batch_size
    micro_per_update = -(-cfg.mini_batch_size * G // cfg.micro_batch_size)  # DeepSpeed's accumulation steps
    accelerator = build_accelerator(grad_accum=micro_per_update if cfg.deepspeed_stage is not None else 1,
                                    deepspeed_stage=cfg.deepspeed_stage, seed=seed)
    world = accelerator.num_processes
    if cfg.mini_batch_size % world:
        raise ValueError(f"grpo mini_batch_size {cfg.mini_batch_size} is not a multiple of the {world} processes")
    seqs = cfg.mini_batch_size // world * G  # sequences of one update on this process
    micro = [(a, min(a + cfg.micro_batch_size, seqs)) for a in range(0, seqs, cfg.micro_batch_size)]
    updates = [[(m * seqs + a, m * seqs + b) for a, b in micro] for m in range(updates_per_step)]
    use_ds = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper() == "DEEPSPEED"
    if use_ds and (cfg.mini_batch_size // world * G) % cfg.micro_batch_size:
        raise ValueError("with DeepSpeed, micro_batch_size must divide mini_batch_size * num_generations per process")

    model, processor = load_model(init_dir, device="cpu", dtype=torch.float32)
    if cfg.freeze_vision:
        freeze_vision(model)
    optim = OptimSettings(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio,
                          schedule=cfg.schedule, max_grad_norm=cfg.max_grad_norm)
    opt, sched = build_optimizer(model, optim, cfg.steps * updates_per_step)
    prepared, opt = accelerator.prepare(model, opt)  # sched is stepped by hand (a prepared one steps per process)

    ref = None
    ref_source = Path(ref_dir) if ref_dir is not None else Path(init_dir)
    if cfg.kl_coef > 0:
        ref = load_model(ref_source, device="cpu", dtype=torch.float32)[0].to(accelerator.device)
        ref.requires_grad_(False)
        ref.eval()
        log.info("reference model loaded from %s (kl_coef=%g)", ref_source, cfg.kl_coef)
    else:
        log.info("no reference model: kl_coef=0 (kl is logged as NaN)")

    run_fp = fingerprint({
        "kind": "grpo", "settings": resume_settings(cfg.to_dict()), "init_dir": str(Path(init_dir).resolve()),
        "ref_dir": str(ref_source.resolve()) if ref is not None else None, "num_rows": len(rows),
        "row_ids": hashlib.sha256("\n".join(str(r.get("id")) for r in rows).encode()).hexdigest()[:16],
        "seed": seed, "image_position": image_position,
    })
    run = _Run(cfg=cfg, accelerator=accelerator, model=prepared, policy=accelerator.unwrap_model(prepared), ref=ref,
               opt=opt, sched=sched, checkpointer=Checkpointer(accelerator, state_dir, run_fp, scheduler=sched), updates=updates,
               use_deepspeed=use_ds)
    return run, processor, run.checkpointer.restore()


def _rollout_engine(run: _Run, processor, init_dir, vllm_cfg):
    """The vLLM rollout engine of ``grpo.rollout_backend: vllm`` (synergy/generate/vllm.py), colocated with this process."""
    from synergy.generate.vllm import RolloutEngine

    acc = run.accelerator
    return RolloutEngine(init_dir, vllm_cfg, processor,
                         stop_ids=_stop_ids(run.policy, processor), suppress_ids=_vision_token_ids(run.policy),
                         process_index=acc.process_index, local_process_index=acc.local_process_index,
                         num_processes=acc.num_processes)


def train_grpo(init_dir, rows: Sequence[Mapping], out_dir, *, log_path, state_dir, cfg: GRPOSettings,
               image_position: str = "after_text", seed: int = 0, ref_dir=None, grading_timeout_s: float = 5.0,
               grading_max_failure_share: float = 0.5, stop_after_steps: int | None = None,
               zero_pass: set | None = None, vllm=None) -> dict:
    """Train with GRPO (see ``_train_grpo``); rows are validated first (``DataError`` naming the row).

    Out of memory anywhere in the run raises ``TrainingOutOfMemory`` naming the arm (the name of
    ``out_dir``), the batch sizes and the saved state a rerun resumes from. A step in which more than
    ``grading_max_failure_share`` of the rollouts could not be graded (timeouts, errors) raises
    ``GradingStorm`` before its update; below that share they count as wrong and are logged, and
    every step's counts are the ``grader_timeouts`` / ``grader_errors`` columns.
    """
    rows = list(rows)
    validate_rows(rows)
    sizes = {"prompts_per_step": cfg.prompts_per_step, "mini_batch_size": cfg.mini_batch_size,
             "num_generations": cfg.num_generations, "micro_batch_size": cfg.micro_batch_size,
             "max_new_tokens": cfg.max_new_tokens}
    with explain_oom(Path(out_dir).name, sizes, state_dir):
        return _train_grpo(init_dir, rows, out_dir, log_path=log_path, state_dir=state_dir, cfg=cfg,
                           image_position=image_position, seed=seed, ref_dir=ref_dir,
                           grading_timeout_s=grading_timeout_s, grading_max_failure_share=grading_max_failure_share,
                           stop_after_steps=stop_after_steps, zero_pass=zero_pass, vllm=vllm)


def _train_grpo(init_dir, rows: Sequence[Mapping], out_dir, *, log_path, state_dir, cfg: GRPOSettings,
                image_position: str = "after_text", seed: int = 0, ref_dir=None, grading_timeout_s: float = 5.0,
                grading_max_failure_share: float = 0.5, stop_after_steps: int | None = None,
                zero_pass: set | None = None, vllm=None) -> dict:
    """Train the model in ``init_dir`` with GRPO on ``rows`` for ``cfg.steps`` steps; save it to ``out_dir``.

    Writes the per-step metrics (``METRIC_COLUMNS``) to ``log_path`` (parquet) and
    ``out_dir/training_summary.json``; keeps full training states in ``state_dir`` while running
    (every ``cfg.save_every_steps`` steps and at the end) and deletes it when done. A rerun resumes
    from the newest state of the same run (same settings, init, reference, rows, seed and image
    position). The reference model (``ref_dir``, default ``init_dir``) is loaded only when
    ``cfg.kl_coef > 0``. ``stop_after_steps`` stops after that many steps (counted from step 0)
    as if the job had been killed: nothing is written but the states saved so far, and
    ``{"completed": False, "step": ...}`` is returned. Raises ``TrainingDiverged`` on a NaN or
    infinite loss or gradient norm (the saved states stay). Returns the summary.

    Hybrid arms (``cfg.hybrid`` interleaved / progressive, paper §3.1) need every row's external
    trace (``response``); with ``cfg.zero_pass == "offline"`` ``zero_pass`` is the set of row ids
    the base model never solved (``zero_pass_ids``). Their metrics add ``HYBRID_COLUMNS``.

    ``cfg.rollout_backend == "vllm"`` samples with an in-process vLLM engine built from ``init_dir``
    with the ``VLLMConfig`` ``vllm`` (defaults when None) and refreshed with the policy's weights
    after every step (and once after resuming).
    """
    t_start = time.monotonic()
    rows = list(rows)
    hybrid = cfg.hybrid != "none"
    if hybrid:
        missing = [r.get("id") for r in rows if not isinstance(r.get("response"), str) or not r["response"].strip()]
        if missing:
            raise DataError(f"hybrid {cfg.hybrid}: {len(missing)} of {len(rows)} rows have no external trace "
                            f"(response), e.g. id={missing[0]!r}")
        if cfg.zero_pass == "offline" and zero_pass is None:
            raise ValueError("zero_pass: offline needs the set of zero-pass ids (zero_pass_ids of the base samples)")
        if zero_pass is not None:
            log.info("offline zero-pass: %d of %d questions", sum(r["id"] in zero_pass for r in rows), len(rows))
    if cfg.rollout_backend == "vllm":
        from synergy.generate.vllm import import_vllm

        import_vllm()  # a missing vLLM fails here, naming the install, before any model is loaded
    columns = METRIC_COLUMNS + (HYBRID_COLUMNS if hybrid else ())
    run, processor, restored = _setup(init_dir, rows, cfg, state_dir=state_dir, seed=seed, ref_dir=ref_dir,
                                      image_position=image_position)
    acc = run.accelerator
    start = int(restored["step"]) if restored else 0
    metrics = MetricsLog(log_path, restored.get("metrics", []) if restored else [])
    P, mbs, world, rank = cfg.prompts_per_step, cfg.mini_batch_size, acc.num_processes, acc.process_index
    rollout = _rollout_engine(run, processor, init_dir, vllm) if cfg.rollout_backend == "vllm" else None
    if rollout is not None and start > 0:
        rollout.load_weights(run.policy)  # the engine holds init_dir's weights; the restored policy is newer
    log.info("GRPO: %d rows, steps %d..%d, %d prompts x G=%d per step, %d updates of %d prompts, micro-batch %d "
             "sequences, lr %g, kl_coef %g, %d process(es)", len(rows), start + 1, cfg.steps, P, cfg.num_generations,
             len(run.updates), mbs, cfg.micro_batch_size, cfg.learning_rate, cfg.kl_coef, world)

    with Grader(timeout_s=grading_timeout_s) as grader:
        for step in range(start, cfg.steps):
            t0 = time.monotonic()
            idx = step_row_indices(len(rows), P, seed, step)
            mine = [i for m in range(len(run.updates)) for i in idx[m * mbs: (m + 1) * mbs][rank::world]]
            plan = None
            if hybrid:
                offline = cfg.zero_pass == "offline"
                plan = HybridPlan(
                    mode=cfg.hybrid,
                    sft_weight=cfg.sft_weight if cfg.hybrid == "interleaved" else cfg.prefix_sft_weight,
                    prefix_fraction=prefix_fraction(step, cfg.steps, cfg.prefix_schedule, cfg.prefix_fade_fraction),
                    online=not offline,
                    offline_zero=frozenset(k for k, i in enumerate(mine) if offline and rows[i]["id"] in zero_pass))
            before = {k: grader.stats[k] for k in ("timeouts", "errors", "graded")}
            with torch.no_grad(), acc.autocast():
                ro = collect_rollouts(run.policy, processor, [rows[i] for i in mine], cfg,
                                      step_seed=step_seed(seed, step, rank), grader=grader,
                                      image_position=image_position, hybrid=plan,
                                      sampler=rollout.sample if rollout is not None else None)
            n_timeouts, n_errors, n_graded = run.allsum([grader.stats[k] - before[k] for k in ("timeouts", "errors",
                                                                                                "graded")])
            check_grading(Path(out_dir).name, step + 1, {"timeouts": int(n_timeouts), "errors": int(n_errors)},
                          int(n_graded), grading_max_failure_share, state_dir)
            advantages = group_advantages(ro.rewards).reshape(-1)
            t1 = time.monotonic()
            micro = _micro_plan(run, ro)
            old, ref, entropy = _score(run, ro, micro)
            t2 = time.monotonic()
            upd = _update(run, ro, advantages, old, ref, step + 1, micro)
            if rollout is not None and step + 1 < cfg.steps:
                rollout.load_weights(run.policy)  # the next step samples from the updated policy
            t3 = time.monotonic()
            row = {"step": step + 1, **_rollout_metrics(run, ro, entropy, old, ref), **upd, "seconds": t3 - t0,
                   "time_generate": t1 - t0, "time_logprobs": t2 - t1, "time_update": t3 - t2,
                   "grader_timeouts": int(n_timeouts), "grader_errors": int(n_errors)}
            metrics.append({k: row[k] for k in columns})
            done = step + 1
            if done % cfg.save_every_steps == 0 and done < cfg.steps:
                run.checkpointer.save({"step": done, "metrics": metrics.rows})
            if stop_after_steps is not None and stop_after_steps <= done < cfg.steps:
                log.warning("stopping after step %d as asked (stop_after_steps); saved states stay in %s", done,
                            state_dir)
                return {"completed": False, "step": done}
        grader_stats = dict(grader.stats)

    if start < cfg.steps:
        run.checkpointer.save({"step": cfg.steps, "metrics": metrics.rows})
    final = metrics.rows[-min(10, len(metrics.rows)):]
    summary = {
        "completed": True,
        "steps": cfg.steps,
        "updates": cfg.steps * len(run.updates),
        "resumed_from_step": start,
        "num_rows": len(rows),
        "prompts_per_step": P,
        "num_generations": cfg.num_generations,
        "init_dir": str(init_dir),
        "reference_model": str(ref_dir if ref_dir is not None else init_dir) if run.ref is not None else None,
        "seed": seed,
        "fingerprint": run.checkpointer.fingerprint,
        "seconds_this_run": time.monotonic() - t_start,
        "training_seconds": sum(r["seconds"] for r in metrics.rows),
        "last_steps_mean": {k: _finite_or_none(_mean([r[k] for r in final])) for k in (
            "reward", "accuracy", "format_rate", "response_length", "truncated_rate", "kl", "entropy")},
        "grader": grader_stats,
        "settings": cfg.to_dict(),
    }
    if acc.is_main_process:
        save_dtype = _checkpoint_dtype(init_dir)
        if save_dtype != torch.float32:
            run.policy.to(save_dtype)
        # the summary goes into the model folder before its rename: the folder never appears without it
        save_model(run.policy, processor, out_dir,
                   extra_files={"training_summary.json": json.dumps(summary, indent=2, default=str) + "\n"})
        metrics.write()
    acc.wait_for_everyone()
    run.checkpointer.clear()
    log.info("GRPO done: %d steps in %.1f s (this run); model -> %s", cfg.steps, summary["seconds_this_run"], out_dir)
    return summary
