"""GRPO steps 2-3 (paper §2.2): sample G responses per question, grade and reward them, build the step's batch.

Rollouts come from ``sampling.sample_groups`` (``synergy.generate.hf.generate``, CPU or GPU) or,
with ``grpo.rollout_backend: vllm``, from ``synergy.generate.vllm.RolloutEngine.sample``; either
returns the prompt and completion ids exactly as sampled, and the batch is built from those ids:
nothing is re-tokenised from decoded text. The prompt part of the batch is the processor's encoding
of the same prompt, checked against the ids the sampler saw. Each response is graded by the one
grader and rewarded ``accuracy_weight * correct + format_weight * format_ok`` (paper: 0.9 / 0.1).

Truncated responses (no stop token within ``max_new_tokens``) are kept, every one of their tokens is
trained, and they are rewarded as graded (a ``<think>`` that was cut off has no answer and no format
credit); no overlong masking or penalty (verl's default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from synergy.config import GRPOSettings
from synergy.grading import Grader, grade_row, reward
from synergy.prompts import build_prompt
from synergy.train.grpo.batch import Rollouts, StepSequences, pack
from synergy.train.grpo.hybrid import HybridPlan, route_zero_pass
from synergy.train.grpo.sampling import needs_sync, sample_groups, stop_ids


def _sample_and_grade(seqs: StepSequences, batch: list[int], draw, seed: int, prefixes: dict[int, str],
                      grader: Grader) -> None:
    """Sample G completions of each variant in ``batch`` with seed ``seed`` and grade them into ``seqs``.

    A guided variant's text is its prefix + the continuation (graded whole); unguided samples are
    the policy's own (``seqs.own``).
    """
    s = draw([seqs.variants[v] for v in batch], seed)
    G = seqs.G
    for k, v in enumerate(batch):
        seqs.sampled_ids[v] = s["prompt_ids"][k]
        i = seqs.prompt_of(v)
        for j in range(G):
            n = i * G + j
            seqs.comp[n], seqs.ended[n] = s["comp_ids"][k * G + j], s["ended"][k * G + j]
            seqs.texts[n] = prefixes.get(v, "") + s["texts"][k * G + j]
            seqs.grades[n] = grade_row(grader, seqs.texts[n], seqs.rows[i])
            seqs.seq_variant[n] = v
            if v not in prefixes:  # the policy's own, unguided sample
                seqs.own.append((n, seqs.grades[n], seqs.ended[n], len(seqs.comp[n]), seqs.texts[n]))
    seqs.stops.append(s["stop"])


def synced_sample(model, processor, prompts: list, filler, cfg: GRPOSettings, seed: int) -> dict:
    """``sample_groups`` when every process must sample the same number of prompts (ZeRO-3, ``synced_gpus``).

    Each process pads its ``prompts`` with copies of ``filler`` up to the largest count over the
    processes (a hybrid step routes a different number of zero-pass questions on each) and drops
    the fillers' samples: the generate calls, and so the collectives inside them, match.
    """
    import torch.distributed as dist

    n = len(prompts)
    most = torch.tensor([n], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    s = sample_groups(model, processor, prompts + [filler] * (int(most.item()) - n), cfg, seed)
    G = cfg.num_generations
    return {"prompt_ids": s["prompt_ids"][:n], "comp_ids": s["comp_ids"][:n * G], "texts": s["texts"][:n * G],
            "ended": s["ended"][:n * G], "stop": s["stop"]}


def collect_rollouts(model, processor, rows: Sequence[Mapping], cfg: GRPOSettings, *, step_seed: int, grader: Grader,
                     image_position: str, hybrid: HybridPlan | None = None, sampler=None) -> Rollouts:
    """Sample ``cfg.num_generations`` responses per row, grade them, and build the log-prob batch.

    Sampling: ``synergy.generate.hf.generate`` with ``cfg``'s temperature / top-p / top-k /
    max_new_tokens and seed ``step_seed``; prompts carry the reasoning instruction when
    ``cfg.reasoning_instruction``. Grading: ``grade_row`` with ``grader``, reward
    ``cfg.accuracy_weight * correct + cfg.format_weight * format_ok``. With ``hybrid`` the
    zero-pass questions are routed as ``HybridPlan`` says (prefix-guided rollouts are sampled
    with seed ``step_seed + 1``). The returned tensors are on the CPU. Raises ``RuntimeError`` if
    the prompt ids the sampler saw differ from the batch's, ``DataError`` if a routed question has
    no trace. ``sampler`` (e.g. ``RolloutEngine.sample``, ``grpo.rollout_backend: vllm``) replaces
    the hf sampler: called as ``sampler(processor, prompts, cfg, seed)`` it returns what
    ``sampling.sample_groups`` returns.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("collect_rollouts needs at least one row")
    if not cfg.temperature > 0:
        raise ValueError(f"grpo temperature must be > 0 (got {cfg.temperature}): greedy rollouts are identical, "
                         "so every group would have zero advantage")
    G, P = cfg.num_generations, len(rows)
    seqs = StepSequences(rows, [build_prompt(r, cfg.reasoning_instruction, image_position) for r in rows], G)

    synced = sampler is None and needs_sync(model)

    def draw(prompts, seed):
        if sampler is not None:
            return sampler(processor, prompts, cfg, seed)
        if synced:  # ZeRO-3: every process samples as many prompts (fillers are dropped), see synced_sample
            return synced_sample(model, processor, list(prompts), seqs.variants[0], cfg, seed)
        return sample_groups(model, processor, prompts, cfg, seed)

    offline = set(hybrid.offline_zero) if hybrid is not None else set()
    plain = [i for i in range(P) if i not in offline]
    if plain or synced:
        _sample_and_grade(seqs, plain, draw, step_seed, {}, grader)
    if hybrid is not None:
        guided, prefixes = route_zero_pass(seqs, hybrid, processor.tokenizer, plain)
        if guided or synced:
            _sample_and_grade(seqs, guided, draw, step_seed + 1, prefixes, grader)

    stop = seqs.stops[0] if seqs.stops else torch.tensor(stop_ids(model, processor))
    input_ids, attention_mask, completion_mask, sft_weight, model_kwargs, variant_ids = pack(
        processor, seqs.variants, seqs.seq_variant, seqs.comp, seqs.seq_rl, seqs.seq_w, stop)
    for v, ids in seqs.sampled_ids.items():
        if variant_ids[v] != ids:
            raise RuntimeError(f"prompt variant {v}: the batch's prompt ids differ from the ids the sampler saw")
    rewards = torch.zeros(P, G, dtype=torch.float32)
    for n, g in enumerate(seqs.grades):
        if g is not None and seqs.seq_rl[n]:
            rewards[n // G, n % G] = reward(g, cfg.accuracy_weight, cfg.format_weight)
    own = sorted(seqs.own, key=lambda r: r[0])
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
        routes=seqs.routes,
        seq_variant=list(seqs.seq_variant),
        prefix_fraction=hybrid.prefix_fraction if hybrid is not None and hybrid.mode == "progressive" else float("nan"),
    )
