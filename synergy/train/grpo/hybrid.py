"""Hybrid SFT & RL of paper §3.1: what a GRPO step does with its zero-pass questions.

A question is zero-pass when none of its G unguided rollouts of the step is correct (``online``), or
when the base model never solved it in its first G rollouts (``zero_pass: offline``,
``zero_pass_ids``). Such a question is routed as its ``HybridPlan`` says:

- ``interleaved``: its external trace (the row's ``response``) plus the end of turn becomes an SFT
  example of weight ``sft_weight`` on the group's first sequence; the other G-1 sequences are idle;
- ``progressive``: the first ``prefix_fraction`` of the trace's tokens is given as an assistant
  prefix with SFT weight ``prefix_sft_weight``, and G rollouts (seed ``step_seed + 1``) continue it
  under GRPO, rewarded on prefix + continuation. The fraction fades from 1 (the whole trace: a pure
  SFT example, as interleaved) to 0 (plain GRPO) over training (``prefix_fraction``: LUFFY's
  linear or Prefix-RFT's cosine schedule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from synergy.config import GRPOSettings
from synergy.data.schema import DataError
from synergy.train.grpo.batch import StepSequences
from synergy.train.sft import END_OF_TURN


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


def step_plan(cfg: GRPOSettings, step: int, step_rows: Sequence[Mapping], zero_pass: set | None) -> HybridPlan:
    """The ``HybridPlan`` of 0-based ``step`` of a hybrid arm over this process's rows of the step."""
    offline = cfg.zero_pass == "offline"
    return HybridPlan(
        mode=cfg.hybrid,
        sft_weight=cfg.sft_weight if cfg.hybrid == "interleaved" else cfg.prefix_sft_weight,
        prefix_fraction=prefix_fraction(step, cfg.steps, cfg.prefix_schedule, cfg.prefix_fade_fraction),
        online=not offline,
        offline_zero=frozenset(k for k, row in enumerate(step_rows) if offline and row["id"] in zero_pass))


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


def external_trace(row: Mapping) -> str:
    """The row's external trace (``response``) without leading newlines; ``DataError`` when it has none."""
    text = row.get("response")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"row id={row.get('id')!r}: no response; hybrid SFT & RL needs the question's external trace")
    return text.lstrip("\n")


def zero_pass_questions(seqs: StepSequences, plan: HybridPlan, sampled: Sequence[int]) -> list[int]:
    """The step's zero-pass prompts: the offline ones, or those of ``sampled`` with no correct rollout."""
    G = seqs.G
    if not plan.online:
        return sorted(plan.offline_zero)
    return sorted(i for i in sampled if not any(seqs.grades[i * G + j].correct for j in range(G)))


def route_to_sft(seqs: StepSequences, i: int, trace: str, weight: float) -> None:
    """Prompt i's whole trace + end of turn is an SFT example on sequence ``i * G``; the other G-1 rows are idle."""
    seqs.routes[i] = "sft"
    v = seqs.add_variant(i, trace + END_OF_TURN)
    for j in range(seqs.G):
        n = i * seqs.G + j
        seqs.comp[n], seqs.seq_rl[n], seqs.ended[n] = [], False, True
        seqs.seq_variant[n] = v if j == 0 else i
    seqs.seq_w[i * seqs.G] = weight


def route_to_prefix(seqs: StepSequences, i: int, prefix: str, weight: float) -> int:
    """Prompt i gets a variant with ``prefix`` (SFT weight ``weight``) for G guided rollouts; returns the variant."""
    seqs.routes[i] = "prefix"
    v = seqs.add_variant(i, prefix)
    seqs.seq_w[i * seqs.G] = weight
    return v


def route_zero_pass(seqs: StepSequences, plan: HybridPlan, tokenizer, sampled: Sequence[int]) -> tuple[list, dict]:
    """Route the step's zero-pass prompts as ``plan`` says; returns the variants still to sample and their prefixes.

    The variants are guided by a trace prefix (``prefixes[v]``), or, for an offline zero-pass
    question whose prefix has faded out, the plain prompt (it was not sampled unguided before).
    """
    offline = set(plan.offline_zero)
    guided: list[int] = []
    prefixes: dict[int, str] = {}
    for i in zero_pass_questions(seqs, plan, sampled):
        trace = external_trace(seqs.rows[i])
        if plan.mode == "interleaved":
            k_tok, full = None, True
        else:
            trace_ids = tokenizer(trace, add_special_tokens=False)["input_ids"]
            k_tok = int(round(plan.prefix_fraction * len(trace_ids)))
            full = k_tok >= len(trace_ids)
        if full:
            route_to_sft(seqs, i, trace, plan.sft_weight)
        elif k_tok == 0:  # the prefix has faded out: plain GRPO (offline questions still need their samples)
            if i in offline:
                guided.append(i)
        else:
            prefix = tokenizer.decode(trace_ids[:k_tok], skip_special_tokens=False)
            v = route_to_prefix(seqs, i, prefix, plan.sft_weight)
            prefixes[v] = prefix
            guided.append(v)
    return guided, prefixes
