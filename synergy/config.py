"""Study configuration: validation against ``config/schema.yaml`` and typed, frozen sections.

A study config (``config/config.yaml``, ``config/smoke.yaml``, ``config/paper.yaml``) is checked
once, when the DAG is built (``rules/common.smk``), with messages that name the offending key:

    unknown config key 'difficulty.num_sample'
    config key 'difficulty.num_samples': 'x' is not of type 'integer'
    missing required config key 'difficulty.thresholds'

Rules then pass only the section a job needs through ``params:``, and the job turns it into one of
the frozen dataclasses below with ``Section.from_dict``; unknown keys raise there too. This module
imports only the standard library, yaml and jsonschema, so the Snakemake driver can load it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
LEVELS = ("L1", "L2", "L3", "L4", "L5")


class ConfigError(ValueError):
    """A study config is invalid; the message names the key."""


GENERATION_BACKENDS = ("hf", "vllm")  # synergy.generate.BACKENDS (not imported: this module stays torch-free)


def _check_backend(key: str, value: str) -> None:
    if value not in GENERATION_BACKENDS:
        raise ConfigError(f"config key {key!r} must be one of {list(GENERATION_BACKENDS)}, got {value!r}")


class _Section:
    """Mixin: build a frozen dataclass from a plain mapping, naming unknown or missing keys."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = ""):
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise ConfigError(f"config section {where!r} must be a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"unknown config key {where + '.' + unknown[0]!r} (known: {sorted(fields)})")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            kwargs[name] = _convert(hints[name], value, f"{where}.{name}")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING]
            if missing:
                raise ConfigError(f"missing required config key {where + '.' + missing[0]!r}") from exc
            raise

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _convert(hint, value, where: str):
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, _Section):
        return hint.from_dict(value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and issubclass(arg, _Section) and isinstance(value, Mapping):
                return arg.from_dict(value, where)
    return value


@dataclass(frozen=True)
class SyntheticConfig(_Section):
    """Generator settings of the embedded suite (synergy/data/suite.py)."""

    seed: int
    image_size: int
    max_objects: int


@dataclass(frozen=True)
class SetSpec(_Section):
    """One benchmark or training set: where it comes from and how it is built."""

    name: str
    loader: str
    num_questions: int | None = None
    templates: Any = "all"          # {template: weight} or "all"
    style: str = "none"
    modality: str = "image"
    error_rate: float = 0.2
    reasoning_share: float = 1.0
    # real datasets (synergy/data/loaders/; loader != synthetic)
    source: str | None = None           # hub id, fetched into resources/datasets/ by rule download_dataset
    local_path: str | None = None       # a local copy in the repository's layout; replaces the download
    revision: str | None = None         # hub revision (branch, tag or commit) to pin
    split: str | None = None            # the split to read (default: the loader's, e.g. MathVision test)
    files: tuple[str, ...] | None = None  # globs of the data files (default: the loader's layout for the split)
    where: Any = None                   # {column: [values]}: keep only matching rows (e.g. MathVerse versions)
    subsets: tuple[str, ...] | None = None  # MMMU: subject folders to read (default: all)
    columns: Any = None                 # Eureka-Distill: {role: column} where auto-detection fails
    trace: str | None = None            # s1K: gemini or deepseek trace columns
    levels: str = "measured"            # measured (base model, paper §2.3) or paper (the tag of the paper's copies)
    level_column: str | None = None     # levels: paper: the column holding the tag
    level_format: str = "level"         # level (1-5 / L1-L5) or passes (correct runs of 16)
    on_bad_row: str = "raise"           # raise, or skip (counted and listed in the rule's log)


@dataclass(frozen=True)
class TinyModelSettings(_Section):
    """Architecture of the tiny Qwen2.5-VL (mirrors synergy.models.TinyModelConfig)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    vision_depth: int = 2
    vision_hidden_size: int = 128
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    max_position_embeddings: int = 4096
    seed: int = 0


@dataclass(frozen=True)
class PretrainConfig(_Section):
    """Brief supervised pretraining of the tiny base model on short answers."""

    train_set: str
    steps: int
    batch_size: int
    learning_rate: float
    curriculum_templates: tuple[str, ...] = ()
    curriculum_steps: int = 0
    warmup_steps: int = 20
    weight_decay: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class BaseModelConfig(_Section):
    source: str                      # tiny (built here) or hf (a Hugging Face model folder)
    path: str | None = None          # hf: hub id, fetched into resources/models/ by rule download_model
    revision: str | None = None      # hf: hub revision to pin
    local_path: str | None = None    # hf: a local model folder that replaces the download
    tiny: TinyModelSettings | None = None
    pretrain: PretrainConfig | None = None
    trust_remote_code: bool = False  # run a checkpoint's own Python code (auto_map) when loading it; off by default


@dataclass(frozen=True)
class SamplingSettings(_Section):
    """Sampling of n answers per question (mirrors synergy.generate.SamplingConfig)."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    max_batch_sequences: int = 256


@dataclass(frozen=True)
class DifficultyConfig(_Section):
    """Difficulty levels from the base model's pass rate (paper §2.3)."""

    num_samples: int
    thresholds: tuple[int, ...]
    reasoning_instruction: bool
    sampling: SamplingSettings
    backend: str = "hf"              # hf (transformers) or vllm (GPU only; synergy.generate.get_backend)

    def __post_init__(self):
        _check_backend("difficulty.backend", self.backend)
        t = self.thresholds
        if len(t) != len(LEVELS) - 1 or any(a <= b for a, b in zip(t, t[1:])):
            raise ConfigError(f"config key 'difficulty.thresholds': need {len(LEVELS) - 1} strictly decreasing "
                              f"pass counts (L1..L4 lower bounds), got {list(t)}")
        if t[0] > self.num_samples:
            raise ConfigError(f"config key 'difficulty.thresholds': {t[0]} passes can never be reached with "
                              f"difficulty.num_samples={self.num_samples}")


@dataclass(frozen=True)
class PromptConfig(_Section):
    image_position: str = "after_text"
    max_pixels: int | None = None    # cap on an image's pixels, shared by training and generation (None: processor default)


@dataclass(frozen=True)
class GradingConfig(_Section):
    timeout_s: float = 5.0
    max_failure_share: float = 0.5  # GRPO stops when more of a step's rollouts time out / fail grading


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

    def __post_init__(self):
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(f"sft batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        if self.select not in ("best_val_loss", "last"):
            raise ConfigError(f"sft select must be best_val_loss or last, got {self.select!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"sft val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class GRPOSettings(_Section):
    """GRPO of one arm with verl's definitions (paper §2.2; notes/ecosystem.md §1.1)."""

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


@dataclass(frozen=True)
class EvalConfig(_Section):
    """Evaluation of every arm (paper §2.4: 4 runs, T 0.6, top-p 0.95, top-k 20)."""

    num_samples: int
    sampling: SamplingSettings
    backend: str = "hf"              # hf (transformers) or vllm (GPU only)
    per_job: str = "benchmark"       # one job per (arm, benchmark), or per arm for all benchmarks (saves the
                                     # ~5-8 s of imports and model loading of each job: the embedded study)

    def __post_init__(self):
        _check_backend("evaluation.backend", self.backend)
        if self.per_job not in ("benchmark", "arm"):
            raise ConfigError(f"config key 'evaluation.per_job' must be benchmark or arm, got {self.per_job!r}")


@dataclass(frozen=True)
class VLLMConfig(_Section):
    """The ``vllm`` generation backend (synergy/generate/vllm.py; GPU only)."""

    tensor_parallel_size: int = 1        # GPUs one model is split over (7B: 1; a job's GPUs beyond it are unused)
    gpu_memory_utilization: float = 0.9  # share of GPU memory vLLM may take (weights + KV cache)
    max_model_len: int | None = None     # context length (prompt + answer); None: the model's own
    limit_mm_per_prompt: int = 1         # images per prompt vLLM reserves memory for (MMMU has up to 7)
    rollout_gpu_memory_utilization: float = 0.3  # GRPO (grpo.rollout_backend: vllm): the colocated engine's share,
                                                 # next to the trainer on the same GPU (TRL's colocate default)

    def __post_init__(self):
        for key in ("gpu_memory_utilization", "rollout_gpu_memory_utilization"):
            value = getattr(self, key)
            if not 0 < value <= 1:
                raise ConfigError(f"config key 'vllm.{key}' must be in (0, 1], got {value}")
        if self.tensor_parallel_size < 1 or self.limit_mm_per_prompt < 0:
            raise ConfigError("config keys 'vllm.tensor_parallel_size' >= 1 and 'vllm.limit_mm_per_prompt' >= 0 needed, "
                              f"got {self.tensor_parallel_size} and {self.limit_mm_per_prompt}")


@dataclass(frozen=True)
class ShardingConfig(_Section):
    """Questions of a benchmark split over this many jobs (one Slurm job each), then gathered; 1 = one job."""

    difficulty: int = 1
    evaluation: int = 1


ARM_KINDS = {"base": None, "sft": SFTSettings, "grpo": GRPOSettings, "mixing": SFTSettings, "merge": None}
DEFAULTS_SECTION = {"sft": "sft", "grpo": "grpo", "mixing": "sft"}  # the defaults an arm's settings override


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

    @property
    def eval_reasoning(self) -> bool:
        return self.kind != "base" if self.reasoning_instruction is None else self.reasoning_instruction


@dataclass(frozen=True)
class StudyConfig:
    """The whole validated study config; ``raw`` keeps the plain mapping for ``params:``."""

    name: str
    seed: int
    benchmarks: tuple[SetSpec, ...]
    train_sets: tuple[SetSpec, ...]
    synthetic: SyntheticConfig | None
    base_model: BaseModelConfig
    prompt: PromptConfig
    difficulty: DifficultyConfig
    grading: GradingConfig
    threads: int
    arms: tuple[ArmSpec, ...] = ()
    evaluation: EvalConfig | None = None
    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    mixing: MixingConfig | None = None
    merging: MergingConfig | None = None
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def bench_names(self) -> list[str]:
        return [b.name for b in self.benchmarks]

    @property
    def train_set_names(self) -> list[str]:
        return [t.name for t in self.train_sets]

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def arm(self, name: str) -> ArmSpec:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"no arm named {name!r} in the study config (have {self.arm_names})")

    def arm_settings(self, name: str):
        """The arm's training settings: its kind's defaults section with the arm's overrides on top."""
        arm = self.arm(name)
        cls = ARM_KINDS[arm.kind]
        if cls is None:
            raise ValueError(f"arm {name!r} of kind {arm.kind!r} is not trained")
        return resolve_settings(self.raw, arm, cls)

    def arm_chain(self, name: str) -> list[str]:
        """The arm and its ancestors (init, mixing source, merge parents), nearest first, no repeats."""
        out, todo = [], [name]
        while todo:
            a = self.arm(todo.pop(0))
            if a.name in out:
                continue
            out.append(a.name)
            todo += arm_parents(a.to_dict(), self.raw)
        return out


# --------------------------------------------------------------------------- validation


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_errors(cfg: Mapping, schema: Mapping, prefix: tuple = ()) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))):
        where = _key_path([*prefix, *err.absolute_path])
        if err.validator == "additionalProperties":
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                messages.append(f"unknown config key {(where + '.' if where else '') + extra!r}")
        elif err.validator == "required":
            name = err.message.split("'")[1]
            messages.append(f"missing required config key {(where + '.' if where else '') + name!r}")
        else:
            messages.append(f"config key {where or '<top>'!r}: {err.message}")
    return messages


def _semantic_errors(cfg: Mapping) -> list[str]:
    from synergy.data.synthetic import TEMPLATES

    errors = []
    if (cfg.get("evaluation") or {}).get("per_job") == "arm" and (cfg.get("sharding") or {}).get("evaluation", 1) > 1:
        errors.append("config keys 'evaluation.per_job: arm' and 'sharding.evaluation' > 1 exclude each other: one job "
                      "per arm evaluates every benchmark whole; use per_job: benchmark to shard")
    for section in ("benchmarks", "train_sets"):
        names = [s["name"] for s in cfg.get(section, [])]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            errors.append(f"config key {section!r}: duplicate names {dupes}")
        for i, spec in enumerate(cfg.get(section, [])):
            where = f"{section}[{i}] ({spec['name']})"
            from synergy.data.loaders.registry import loader_errors, synthetic_errors

            errors += synthetic_errors(section, i, spec) if spec.get("loader") == "synthetic" else \
                loader_errors(section, i, spec)
            if spec.get("loader") == "synthetic":
                if "num_questions" not in spec:
                    errors.append(f"missing required config key '{section}[{i}].num_questions' for loader synthetic")
                tpls = spec.get("templates", "all")
                if tpls == "all" and section == "benchmarks":
                    errors.append(f"config key '{section}[{i}].templates': a benchmark must list its templates")
                elif isinstance(tpls, Mapping):
                    unknown = sorted(set(tpls) - set(TEMPLATES))
                    if unknown:
                        errors.append(f"config key '{section}[{i}].templates': unknown templates {unknown} in {where}; "
                                      f"known: {sorted(TEMPLATES)}")
    uses_synth = any(s.get("loader") == "synthetic" for s in [*cfg.get("benchmarks", []), *cfg.get("train_sets", [])])
    if uses_synth and "synthetic" not in cfg:
        errors.append("missing required config key 'synthetic' (a benchmark or train set uses loader: synthetic)")
    bm = cfg.get("base_model", {})
    if bm.get("source") == "tiny":
        for key in ("tiny", "pretrain"):
            if key not in bm:
                errors.append(f"missing required config key 'base_model.{key}' for source: tiny")
        pre = bm.get("pretrain", {})
        if pre and pre.get("train_set") not in [s["name"] for s in cfg.get("train_sets", [])]:
            errors.append(f"config key 'base_model.pretrain.train_set': {pre.get('train_set')!r} is not a train set")
        if pre and pre.get("curriculum_steps", 0) > pre.get("steps", 0):
            errors.append("config key 'base_model.pretrain.curriculum_steps': exceeds base_model.pretrain.steps")
        unknown = sorted(set(pre.get("curriculum_templates", [])) - set(TEMPLATES)) if pre else []
        if unknown:
            errors.append(f"config key 'base_model.pretrain.curriculum_templates': unknown templates {unknown}")
    judge = cfg.get("judge") or {}
    if judge.get("enabled") and not (judge["model"].get("path") or judge["model"].get("local_path")):
        errors.append("missing required config key 'judge.model.path' (hub id) or 'judge.model.local_path' "
                      "for judge.enabled: true")
    if bm.get("source") == "hf" and not (bm.get("path") or bm.get("local_path")):
        errors.append("missing required config key 'base_model.path' (hub id) or 'base_model.local_path' "
                      "(a model folder) for source: hf")
    return errors


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
    if kind == "merge":
        m = cfg["merging"]
        return [m["sft_arm"], m["rl_arm"]] + ([m.get("base_arm", "base")] if arm.get("method") == "ties" else [])
    parents = [arm.get("init", "base")]
    if kind == "mixing" and arm.get("source"):
        parents.append(arm["source"])
    return parents


def _arm_errors(cfg: Mapping, schema: Mapping | None = None) -> list[str]:
    errors: list[str] = []
    user_arms = cfg.get("arms", [])
    try:
        merges = merge_arm_dicts(cfg)
    except ConfigError as exc:
        return [str(exc)]
    arms = [*user_arms, *merges]
    names = [a["name"] for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append(f"config key 'arms': duplicate names {dupes} (merge arms are named merge-<method>-<ratio>)")
    train_sets = {t["name"]: t for t in cfg.get("train_sets", [])}
    kinds = {a["name"]: a["kind"] for a in arms}
    for i, a in enumerate(user_arms):
        if a["kind"] == "base":
            continue
        parent = a.get("init", "base")
        if parent not in names:
            errors.append(f"config key 'arms[{i}].init': arm {a['name']!r} starts from {parent!r}, which is not an arm")
        if a.get("train_set") not in train_sets:
            errors.append(f"config key 'arms[{i}].train_set': {a.get('train_set')!r} is not a train set")
        if a["kind"] == "mixing":
            if not a.get("source"):
                errors.append(f"missing required config key 'arms[{i}].source' (the RL arm a mixing arm samples from)")
            elif a["source"] not in names:
                errors.append(f"config key 'arms[{i}].source': {a['source']!r} is not an arm")
            if "mixing" not in cfg:
                errors.append(f"missing required config key 'mixing' (arm {a['name']!r} is of kind mixing)")
        elif a.get("source"):
            errors.append(f"config key 'arms[{i}].source': only kind mixing takes a source (arm {a['name']!r})")
        section = DEFAULTS_SECTION.get(a["kind"])
        if schema is not None and section in schema.get("$defs", {}):  # types of the overrides
            kind_schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{section}"}
            errors += [e for e in _schema_errors(dict(a.get("settings") or {}), kind_schema, ("arms", i, "settings"))
                       if not e.startswith("unknown config key")]  # unknown keys: named by resolve_settings below
        try:
            settings = resolve_settings(cfg, ArmSpec.from_dict(a, f"arms[{i}]"), ARM_KINDS[a["kind"]])
        except (ConfigError, TypeError) as exc:
            errors.append(f"config key 'arms[{i}]' ({a['name']}): {exc}")
            continue
        ts = train_sets.get(a.get("train_set"), {})
        needs_traces = a["kind"] == "mixing" or getattr(settings, "hybrid", "none") != "none"
        if needs_traces and ts.get("style") == "none":
            errors.append(f"config key 'arms[{i}].train_set': arm {a['name']!r} needs external traces, but train set "
                          f"{ts['name']!r} has style none (no responses)")
    m = cfg.get("merging")
    if m:
        for key in ("sft_arm", "rl_arm", "base_arm"):
            if key in m or key != "base_arm":
                arm = m.get(key, "base")
                if arm not in names:
                    errors.append(f"config key 'merging.{key}': {arm!r} is not an arm (a study without it sets "
                                  "`merging: null`)")
                elif kinds[arm] == "merge":
                    errors.append(f"config key 'merging.{key}': {arm!r} is itself a merge")
    parents = {a["name"]: arm_parents(a, cfg) for a in arms}
    reported: set[frozenset] = set()
    for start in parents:  # every chain of parents must end at a base arm
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for p in parents.get(node, []):
                if p == start or p in path:
                    cyc = path[path.index(p):] if p in path else path
                    if frozenset(cyc) not in reported:
                        reported.add(frozenset(cyc))
                        errors.append(f"config key 'arms': the arms {cyc} form a cycle of parents")
                elif p in parents:
                    stack.append((p, path + [p]))
    for i, table in enumerate(cfg.get("tables") or []):
        missing = [a for a in table["arms"] if a not in names]
        if missing:
            errors.append(f"config key 'tables[{i}]' ({table['name']}): arms {missing} are not declared in 'arms'")
    return errors


def load_config(cfg: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> StudyConfig:
    """Validate a study config mapping and return it typed; raise ConfigError listing every problem."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"invalid study config: expected a mapping of sections, got {type(cfg).__name__} "
                          "(is the config file empty?)")
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = _schema_errors(cfg, schema)
    if not errors:
        errors = _semantic_errors(cfg) + _arm_errors(cfg, schema)
    if errors:
        raise ConfigError("invalid study config:\n  " + "\n  ".join(errors))
    return StudyConfig(
        name=cfg["study"]["name"],
        seed=cfg["study"]["seed"],
        benchmarks=tuple(SetSpec.from_dict(b, f"benchmarks[{i}]") for i, b in enumerate(cfg["benchmarks"])),
        train_sets=tuple(SetSpec.from_dict(t, f"train_sets[{i}]") for i, t in enumerate(cfg["train_sets"])),
        synthetic=SyntheticConfig.from_dict(cfg["synthetic"], "synthetic") if "synthetic" in cfg else None,
        base_model=BaseModelConfig.from_dict(cfg["base_model"], "base_model"),
        prompt=PromptConfig.from_dict(cfg["prompt"], "prompt"),
        difficulty=DifficultyConfig.from_dict(cfg["difficulty"], "difficulty"),
        grading=GradingConfig.from_dict(cfg["grading"], "grading"),
        threads=cfg["compute"]["threads"],
        arms=tuple(ArmSpec.from_dict(a, f"arms[{i}]") for i, a in enumerate([*cfg.get("arms", []), *merge_arm_dicts(cfg)])),
        evaluation=EvalConfig.from_dict(cfg["evaluation"], "evaluation") if "evaluation" in cfg else None,
        tables={t["name"]: tuple(t["arms"]) for t in (cfg.get("tables") or [])},
        mixing=MixingConfig.from_dict(cfg["mixing"], "mixing") if "mixing" in cfg else None,
        merging=MergingConfig.from_dict(cfg["merging"], "merging") if cfg.get("merging") else None,
        vllm=VLLMConfig.from_dict(cfg.get("vllm") or {}, "vllm"),
        sharding=ShardingConfig.from_dict(cfg.get("sharding") or {}, "sharding"),
        raw=cfg,
    )


def load_config_file(path: str | Path, *overrides: str | Path) -> StudyConfig:
    """Load a YAML config (plus override files, merged in order as Snakemake does) and validate it."""
    data = yaml.safe_load(Path(path).read_text())
    for extra in overrides:
        deep_update(data, yaml.safe_load(Path(extra).read_text()) or {})
    return load_config(data)


def deep_update(base: dict, other: Mapping) -> dict:
    """Merge ``other`` into ``base`` recursively (mappings merge, everything else replaces), like Snakemake."""
    for k, v in other.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base
