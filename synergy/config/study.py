"""The whole study config (``StudyConfig``) and how it is loaded: validated once, then typed and frozen."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synergy.config.sections import (
    BaseModelConfig,
    DifficultyConfig,
    EvalConfig,
    GradingConfig,
    PromptConfig,
    SetSpec,
    ShardingConfig,
    SyntheticConfig,
    VLLMConfig,
)
from synergy.config.training import (
    ARM_KINDS,
    ArmSpec,
    MergingConfig,
    MixingConfig,
    arm_parents,
    merge_arm_dicts,
    resolve_settings,
)
from synergy.config.overrides import coerce_to_schema
from synergy.config.validation import ConfigError, _arm_errors, _schema_errors, _semantic_errors
from synergy.scorecard.checks import ExternalArm

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


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
    externals: tuple[ExternalArm, ...] = ()   # checkpoints the study did not train (docs/scorecard.md)
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

    @property
    def external_names(self) -> list[str]:
        return [e.name for e in self.externals]

    def external(self, name: str) -> ExternalArm | None:
        """The ``external:`` entry named ``name``, None when it is not one (a study arm, or unknown)."""
        return next((e for e in self.externals if e.name == name), None)

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


def load_config(cfg: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> StudyConfig:
    """Validate a study config mapping and return it typed; raise ConfigError listing every problem."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"invalid study config: expected a mapping of sections, got {type(cfg).__name__} "
                          "(is the config file empty?)")
    schema = yaml.safe_load(Path(schema_path).read_text())
    if isinstance(cfg, MutableMapping):
        coerce_to_schema(cfg, schema)  # --config values arrive as strings (synergy/config/overrides.py)
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
        externals=tuple(ExternalArm.from_dict(e) for e in cfg.get("external") or []),
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


def config_diff(before: Mapping, after: Mapping, prefix: str = "") -> list[str]:
    """Lines ``key.path: old -> new`` for every leaf ``after`` changes or adds (lists of named entries such as
    ``benchmarks`` and ``arms`` are compared entry by entry under their names); the rehearsal's difference
    from the paper study (docs/paper-study.md "Rehearsal")."""
    def named(v):
        return isinstance(v, list) and v and all(isinstance(e, Mapping) and "name" in e for e in v)

    lines: list[str] = []
    for k in sorted(set(before) | set(after), key=str):
        path, a, b = f"{prefix}{k}", before.get(k), after.get(k)
        if named(a) and named(b):
            a, b = {e["name"]: e for e in a}, {e["name"]: e for e in b}
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            lines += config_diff(a, b, path + ".")
        elif a != b:
            lines.append(f"{path}: {_short(a)} -> {_short(b)}")
    return lines


def _short(v: Any) -> str:
    return "(unset)" if v is None else yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
