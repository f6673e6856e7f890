"""What a GRPO step logs (``METRIC_COLUMNS``, verl's names where it has them) and the run's summary.

``entropy`` is the token mean of the old-log-prob pass's entropies and ``kl`` the token mean of
k3(rollout policy || reference) from the same pass (NaN when no reference is loaded);
``policy_loss`` and ``clip_ratio`` come from the update passes (verl ``pg_loss``,
``pg_clipfrac``). ``reward``, ``accuracy``, ``format_rate``, ``response_length`` and
``truncated_rate`` describe the policy's own unguided samples. Several processes: every count is
summed over processes before the means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from synergy.train.grpo.batch import Rollouts
from synergy.train.losses import kl_k3

METRIC_COLUMNS = (
    "step", "reward", "accuracy", "format_rate", "entropy", "response_length", "truncated_rate", "clip_ratio", "kl",
    "policy_loss", "grad_norm", "lr", "groups_with_signal", "num_prompts", "seconds", "time_generate",
    "time_logprobs", "time_update", "grader_timeouts", "grader_errors",
)
"""Columns of the per-step metrics table (``log_path``), in order."""
HYBRID_COLUMNS = ("sft_questions", "sft_tokens", "sft_loss", "prefix_fraction")
"""Extra columns of a hybrid arm (paper §3.1): questions routed to SFT / a prefix, SFT tokens, their NLL, prefix share."""
SUMMARY_MEANS = ("reward", "accuracy", "format_rate", "response_length", "truncated_rate", "kl", "entropy")
"""Metrics whose mean over the last 10 steps goes into ``training_summary.json``."""


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def rollout_metrics(run, ro: Rollouts, entropy: Tensor, old: Tensor, ref: Tensor | None) -> dict:
    """Reward, accuracy, format, lengths (the policy's own samples), entropy, KL and signal share (RL tokens/groups).

    ``run`` is the ``run.Run`` (its ``allsum`` sums over processes).
    """
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


def last_steps_mean(rows: Sequence[dict], last: int = 10) -> dict:
    """Mean of each of ``SUMMARY_MEANS`` over the last ``last`` logged steps (None where not finite)."""
    final = rows[-min(last, len(rows)):]
    return {k: finite_or_none(mean([r[k] for r in final])) for k in SUMMARY_MEANS}
