"""Sections of the trained arms (paper §2.1, §2.2, §3): SFT, GRPO, data mixing, merging, and the arms themselves.

An arm's settings are its kind's defaults section (``sft:`` / ``grpo:``; ``sft:`` for mixing) with the
arm's own ``settings:`` on top (``resolve_settings``); ``merging:`` expands into merge arms
(``merge_arm_dicts``); ``arm_parents`` names what an arm is built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synergy.config.base import ConfigError, _check_backend, _Section
from synergy.config.sections import SamplingSettings


@dataclass(frozen=True)
class SFTSettings(_Section):
    """Long-CoT SFT of one arm (paper §2.1: LLaMA-Factory, lr 1e-5, batch 32, 15 / 5 epochs, ViT + connector frozen)."""

    learning_rate: float
    batch_size: int                  # sequences per optimiser step (paper 32)
    epochs: int                      # paper: 15 for s1 / s1.1, 5 for Eureka-Distill
    micro_batch_size: int = 8        # sequences per forward/backward; batch_size must be a multiple
    warmup_ratio: float = 0.1        # LLaMA-Factory's example config (paper silent)
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    val_fraction: float = 0.05       # held-out share of the train set used to pick the best epoch
    select: str = "best_val_loss"    # best_val_loss (the paper reports the best checkpoint) or last
    freeze_vision: bool = True       # paper §2.1: frozen ViT and MLP connector
    max_length: int = 4096           # longer examples raise (never truncated: would cut image tokens)
    max_examples: int | None = None  # use at most this many training rows (None: all)
    save_every_steps: int = 50
    reasoning_instruction: bool = True  # append the reasoning instruction to training prompts
    deepspeed_stage: int | None = None  # ZeRO stage on GPUs (None: plain DDP / single process)
    keep_epochs: tuple[int, ...] = ()  # epoch models kept in the output folder as epochs/epoch-<k> (init_epoch of
                                       # another arm, e.g. two-stage from epoch 4)

    def __post_init__(self):
        object.__setattr__(self, "keep_epochs", tuple(int(k) for k in self.keep_epochs))
        bad = [k for k in self.keep_epochs if not 1 <= k <= self.epochs]
        if bad:
            raise ConfigError(f"sft keep_epochs {bad} are not epochs 1..{self.epochs}")
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(f"sft batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        if self.select not in ("best_val_loss", "last"):
            raise ConfigError(f"sft select must be best_val_loss or last, got {self.select!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"sft val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class GRPOSettings(_Section):
    """GRPO of one arm with verl's definitions (paper §2.2; docs/paper.md §4, docs/ecosystem.md §2)."""

    learning_rate: float             # paper 1e-6
    steps: int                       # optimiser steps = steps * prompts_per_step / mini_batch_size
    prompts_per_step: int            # paper 128 (verl data.train_batch_size)
    mini_batch_size: int             # paper 64 prompts per update -> 2 updates per step
    num_generations: int             # G, paper 8
    micro_batch_size: int = 64       # sequences per forward/backward (memory only; no effect on the math)
    temperature: float = 1.0         # paper 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 4096       # paper 4k (two-stage 16k)
    clip_low: float = 0.2            # PPO epsilon (verl default; paper silent)
    clip_high: float = 0.2
    clip_ratio_c: float | None = 3.0  # verl's dual-clip bound for negative advantages
    kl_coef: float = 0.005           # beta, paper 0.005 (ablation 0); low-variance k3 estimator
    accuracy_weight: float = 0.9     # reward = 0.9 * accuracy + 0.1 * format (paper §2.2)
    format_weight: float = 0.1
    drop_easy: bool = False          # paper §2.2 ablation: drop queries the base model solves in all G rollouts
    # hybrids of paper §3.1 (synergy/train/grpo/hybrid.py): zero-pass questions get their external trace
    hybrid: str = "none"             # none | interleaved (SFT loss on the trace) | progressive (fading trace prefix)
    zero_pass: str = "online"        # online: 0 of the step's G rollouts correct; offline: 0 of the base model's G
    sft_weight: float = 1.0          # interleaved: weight of the SFT tokens in the token-mean (paper silent)
    prefix_sft_weight: float = 0.2   # progressive: weight of the prefix tokens (paper §3.1: 0.2)
    prefix_schedule: str = "linear"  # progressive: linear (LUFFY) or cosine (Prefix-RFT) fade of the prefix share
    prefix_fade_fraction: float = 1.0  # progressive: the prefix reaches zero after this share of the steps
    warmup_ratio: float = 0.0
    schedule: str = "constant"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    freeze_vision: bool = True
    reasoning_instruction: bool = True  # "the same thinking template" (paper §2.2)
    save_every_steps: int = 10
    deepspeed_stage: int | None = None
    gradient_checkpointing: bool = False  # recompute activations in backward (memory for time; same gradients)
    share_prompt: bool = True        # log-prob passes run each prompt once per group (grpo/shared.py; no effect on the math)
    rollout_backend: str = "hf"      # hf (transformers generate) or vllm (in-process vLLM refreshed each step; GPU only)

    def __post_init__(self):
        _check_backend("grpo.rollout_backend", self.rollout_backend)
        if self.prompts_per_step % self.mini_batch_size:
            raise ConfigError(f"grpo prompts_per_step {self.prompts_per_step} is not a multiple of mini_batch_size "
                              f"{self.mini_batch_size}")
        if self.num_generations < 2:
            raise ConfigError("grpo num_generations must be >= 2 (advantages are relative within a group)")
        if self.hybrid not in HYBRIDS:
            raise ConfigError(f"grpo hybrid must be one of {HYBRIDS}, got {self.hybrid!r}")
        if self.zero_pass not in ("online", "offline"):
            raise ConfigError(f"grpo zero_pass must be online or offline, got {self.zero_pass!r}")
        if self.prefix_schedule not in ("linear", "cosine"):
            raise ConfigError(f"grpo prefix_schedule must be linear or cosine, got {self.prefix_schedule!r}")
        if self.hybrid != "none" and self.drop_easy:
            raise ConfigError("grpo hybrid and drop_easy cannot be combined in one arm")


HYBRIDS = ("none", "interleaved", "progressive")


@dataclass(frozen=True)
class MixingConfig(_Section):
    """Data mixing (paper §3.2): the RL arm's correct samples plus the traces of the questions it never solved."""

    samples_per_question: int        # paper: 8 responses per Eureka-Distill question
    sampling: SamplingSettings       # paper silent; the embedded default uses the RL rollout settings (T 1.0)
    reasoning_instruction: bool = True  # the RL arm was trained with the instruction


@dataclass(frozen=True)
class TiesSettings(_Section):
    density: float = 0.5             # share of each task vector's entries kept by magnitude (mergekit example; paper silent)
    scale: float = 1.0               # lambda: the merged task vector is scaled by this before it is added to the base


@dataclass(frozen=True)
class SlerpSettings(_Section):
    dot_threshold: float = 0.9995    # |cos| above this: the tensors are nearly parallel -> linear (mergekit's value)


@dataclass(frozen=True)
class MergingConfig(_Section):
    """The merge grid of paper §3.3: methods x SFT-model ratios between an SFT arm and the RL arm."""

    sft_arm: str
    rl_arm: str
    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    base_arm: str = "base"           # TIES' task vectors are relative to this (the two arms' common start)
    endpoints: str = "parents"       # parents: ratios 0 / 1 ARE the RL / SFT arm (no job); merge: merged like the rest
    backend: str = "native"          # native (synergy/merge/engine.py) or mergekit (optional install; docs/merging.md)
    ties: TiesSettings = field(default_factory=TiesSettings)
    slerp: SlerpSettings = field(default_factory=SlerpSettings)

    def arm_name(self, method: str, ratio: float) -> str:
        return f"merge-{method}-{ratio:g}"

    def is_endpoint(self, ratio: float) -> bool:
        return ratio in (0.0, 1.0) and self.endpoints == "parents"

    def grid(self) -> list[tuple[str, float, str]]:
        """(method, ratio, arm) of every cell; endpoint cells name the parent arm when ``endpoints: parents``."""
        out = []
        for m in self.methods:
            for r in self.ratios:
                if self.is_endpoint(r):
                    out.append((m, r, self.rl_arm if r == 0.0 else self.sft_arm))
                else:
                    out.append((m, r, self.arm_name(m, r)))
        return out


ROUTING_SIGNALS = ("agreement", "confidence")  # synergy.routing.SIGNALS (config does not import the routing code)


@dataclass(frozen=True)
class RoutingSettings(_Section):
    """A routed arm (beyond the paper; synergy/routing.py, docs/routing.md): the signal and its threshold."""

    signal: str = "agreement"    # agreement: share of the fast arm's samples giving its most common answer;
    #                              confidence: their mean geometric-mean token probability (docs/routing.md §1)
    threshold: float = 1.0       # the fast arm answers when the signal is at least this; else the slow arm
    tune_set: str | None = None  # a train set neither parent trained on: the threshold is chosen on it instead
    candidates: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # the thresholds tried on the tune set

    def __post_init__(self):
        if self.signal not in ROUTING_SIGNALS:
            raise ConfigError(f"config key 'signal': unknown routing signal {self.signal!r}; "
                              f"known: {list(ROUTING_SIGNALS)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"config key 'threshold': must be in [0, 1], got {self.threshold}")
        object.__setattr__(self, "candidates", tuple(float(c) for c in self.candidates))
        if not self.candidates or any(not 0.0 <= c <= 1.0 for c in self.candidates):
            raise ConfigError(f"config key 'candidates': thresholds in [0, 1], at least one; got {list(self.candidates)}")


ARM_KINDS = {"base": None, "sft": SFTSettings, "grpo": GRPOSettings, "mixing": SFTSettings, "merge": None,
             "routed": RoutingSettings}
DEFAULTS_SECTION = {"sft": "sft", "grpo": "grpo", "mixing": "sft", "routed": "routing"}  # defaults an arm's settings override


@dataclass(frozen=True)
class ArmSpec(_Section):
    """One model of the study: its kind, its parent arm, its data and its overrides of the kind's defaults."""

    name: str
    kind: str
    init: str = "base"                  # the arm it starts from
    train_set: str | None = None
    settings: Any = None                # mapping: overrides of the `sft:` / `grpo:` defaults
    reasoning_instruction: bool | None = None  # at evaluation; default: False for base, True otherwise
    source: str | None = None           # mixing: the RL arm whose correct samples are mixed with the traces
    method: str | None = None           # merge (generated from `merging:`): linear | ties | slerp
    sft_ratio: float | None = None      # merge: weight of the SFT arm (0 = the RL arm, 1 = the SFT arm)
    fast: str | None = None             # routed: the arm whose samples' agreement routes, and answers when they agree
    slow: str | None = None             # routed: the arm that answers the other questions
    init_epoch: int | None = None       # start from this epoch of the init arm (an SFT arm's keep_epochs) instead of
                                        # its chosen model (paper §3.1: two-stage from the epoch-4 checkpoint)

    @property
    def eval_reasoning(self) -> bool:
        return self.kind != "base" if self.reasoning_instruction is None else self.reasoning_instruction


def resolve_settings(raw: Mapping[str, Any], arm: ArmSpec, cls):
    """Defaults section of the arm's kind (``sft:`` / ``grpo:``; ``sft:`` for mixing) merged with ``arm.settings``."""
    merged = dict(raw.get(DEFAULTS_SECTION[arm.kind]) or {})
    merged.update(dict(arm.settings or {}))
    return cls.from_dict(merged, f"{arm.kind} (arm {arm.name})")


def merge_arm_dicts(cfg: Mapping) -> list[dict]:
    """The arms that ``merging:`` expands into (kind merge), in grid order; none for endpoint cells kept as parents."""
    if not cfg.get("merging"):
        return []
    mc = MergingConfig.from_dict(cfg["merging"], "merging")
    return [{"name": mc.arm_name(m, r), "kind": "merge", "method": m, "sft_ratio": float(r)}
            for m in mc.methods for r in mc.ratios if not mc.is_endpoint(r)]


def arm_parents(arm: Mapping, cfg: Mapping) -> list[str]:
    """The arms an arm is built from: its init; a mixing arm's source; a merge's two parents (+ TIES' base)."""
    kind = arm["kind"]
    if kind == "base":
        return []
    if kind == "routed":
        return [a for a in (arm.get("fast"), arm.get("slow")) if a]
    if kind == "merge":
        m = cfg["merging"]
        return [m["sft_arm"], m["rl_arm"]] + ([m.get("base_arm", "base")] if arm.get("method") == "ties" else [])
    parents = [arm.get("init", "base")]
    if kind == "mixing" and arm.get("source"):
        parents.append(arm["source"])
    return parents
