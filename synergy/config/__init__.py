"""Study configuration: validation against ``config/schema.yaml`` and typed, frozen sections.

A study config (``config/config.yaml``, ``config/smoke.yaml``, ``config/paper.yaml``) is checked
once, when the DAG is built (``rules/common.smk``), with messages that name the offending key:

    unknown config key 'difficulty.num_sample'
    config key 'difficulty.num_samples': 'x' is not of type 'integer'
    missing required config key 'difficulty.thresholds'

Rules then pass only the section a job needs through ``params:``, and the job turns it into one of
the frozen dataclasses of this package with ``Section.from_dict``; unknown keys raise there too.
This package imports only the standard library, yaml and jsonschema (and, to check synthetic
templates and loader options, synergy/data's torch-free modules), so the Snakemake driver can load
it. Modules: ``base`` (the section machinery), ``sections`` (data, base model, generation,
evaluation), ``training`` (SFT, GRPO, mixing, merging, arms), ``validation`` (schema and semantic
checks), ``study`` (``StudyConfig``, ``load_config``).
"""

from __future__ import annotations

from synergy.config.base import GENERATION_BACKENDS, LEVELS, ConfigError
from synergy.config.base import _check_backend as _check_backend
from synergy.config.base import _convert as _convert
from synergy.config.base import _Section as _Section
from synergy.config.sections import (
    BaseModelConfig,
    DifficultyConfig,
    EvalConfig,
    GradingConfig,
    PretrainConfig,
    PromptConfig,
    SamplingSettings,
    SetSpec,
    ShardingConfig,
    SyntheticConfig,
    TrackingConfig,
    TinyModelSettings,
    VLLMConfig,
)
from synergy.config.study import SCHEMA_PATH, StudyConfig, deep_update, load_config, load_config_file
from synergy.config.training import (
    ARM_KINDS,
    DEFAULTS_SECTION,
    HYBRIDS,
    ArmSpec,
    GRPOSettings,
    MergingConfig,
    MixingConfig,
    SFTSettings,
    SlerpSettings,
    TiesSettings,
    arm_parents,
    merge_arm_dicts,
    resolve_settings,
)

__all__ = [
    "ARM_KINDS", "DEFAULTS_SECTION", "GENERATION_BACKENDS", "HYBRIDS", "LEVELS", "SCHEMA_PATH", "ArmSpec",
    "BaseModelConfig", "ConfigError", "DifficultyConfig", "EvalConfig", "GRPOSettings", "GradingConfig",
    "MergingConfig", "MixingConfig", "PretrainConfig", "PromptConfig", "SFTSettings", "SamplingSettings", "SetSpec",
    "ShardingConfig", "SlerpSettings", "StudyConfig", "SyntheticConfig", "TiesSettings", "TrackingConfig", "TinyModelSettings",
    "VLLMConfig", "arm_parents", "deep_update", "load_config", "load_config_file", "merge_arm_dicts",
    "resolve_settings",
]
# _Section, _convert, _check_backend: the section machinery, for sections defined elsewhere (synergy/report/targets.py)
