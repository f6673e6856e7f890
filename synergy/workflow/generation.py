"""The jobs of the generation stages (difficulty sampling, evaluation): sharding, per-arm evaluation, seeds.

``sharding.<stage>: n`` splits a benchmark's stage into n jobs (gathered by synergy/shards.py);
``evaluation.per_job: arm`` makes one evaluate job per arm cover every benchmark, each with the seed
its own job would have had.
"""

from __future__ import annotations

from synergy.config import StudyConfig
from synergy.workflow.external import seed_name
from synergy.workflow.inputs import derived_seed
from synergy.workflow.paths import BENCH_PATH, EVAL_PATH, EVAL_PER_ARM_PATTERNS, SHARD_PATTERNS, UNSHARDED_PATTERNS


def eval_per_arm(study: StudyConfig) -> bool:
    """Whether one evaluate job per arm covers all benchmarks (``evaluation.per_job: arm``)."""
    return study.evaluation is not None and study.evaluation.per_job == "arm"


def eval_job_outputs(study: StudyConfig) -> list[str]:
    """Output patterns of one evaluate job: every benchmark of ``{arm}`` (per arm), or one file (``{bench}``, ``{shard}``)."""
    if eval_per_arm(study):
        return [EVAL_PATH.replace("{bench}", b) for b in study.bench_names]  # patterns: {study}, {arm} stay wildcards
    return [generation_path(study, "evaluation", "output")]


def eval_job_path(study: StudyConfig, kind: str) -> str:
    """The log / benchmark pattern of one evaluate job."""
    return EVAL_PER_ARM_PATTERNS[kind] if eval_per_arm(study) else generation_path(study, "evaluation", kind)


def _eval_job_benches(study: StudyConfig, wildcards) -> list[str]:
    return study.bench_names if eval_per_arm(study) else [wildcards.bench]


def eval_bench_inputs(study: StudyConfig, wildcards) -> list[str]:
    """The benchmark files one evaluate job reads, in the order of its outputs."""
    return [BENCH_PATH.format(study=study.name, bench=b) for b in _eval_job_benches(study, wildcards)]


def eval_seeds(study: StudyConfig, wildcards) -> list[int]:
    """One seed per benchmark of the job: the same whether the job covers one benchmark or the arm's all; an
    external arm with ``seeds_of`` gets that study arm's seeds (synergy.workflow.external.seed_name)."""
    return [generation_seed(study, "evaluation", seed_name(study, wildcards.arm), b, shard=wildcards.get("shard"))
            for b in _eval_job_benches(study, wildcards)]


def shard_count(study: StudyConfig, stage: str) -> int:
    """Jobs per benchmark of a generation stage (``difficulty`` or ``evaluation``) from ``sharding:``."""
    return int(getattr(study.sharding, stage))


def generation_path(study: StudyConfig, stage: str, kind: str) -> str:
    """The output / log / benchmark path pattern of one generation job: per shard when the stage is sharded."""
    return (SHARD_PATTERNS if shard_count(study, stage) > 1 else UNSHARDED_PATTERNS)[stage][kind]


def shard_paths(study: StudyConfig, stage: str, **wildcards: str) -> list[str]:
    """Every shard's output of one benchmark (and arm), in shard order, for the gather rule."""
    pattern = SHARD_PATTERNS[stage]["output"]
    return [pattern.format(shard=i, **{"study": study.name, **wildcards}) for i in range(shard_count(study, stage))]


def shard_of(study: StudyConfig, stage: str, wildcards) -> list[int]:
    """``[index, count]`` of a generation job from its wildcards (``[0, 1]`` when the stage is not sharded)."""
    count = shard_count(study, stage)
    return [int(wildcards.shard), count] if count > 1 else [0, 1]


def generation_seed(study: StudyConfig, stage: str, *names: str, shard=None) -> int:
    """The seed of one generation job; each shard of a sharded stage gets its own."""
    count = shard_count(study, stage)
    extra = [f"shard{int(shard)}of{count}"] if count > 1 else []
    return derived_seed(study.seed, {"difficulty": "difficulty", "evaluation": "eval"}[stage], *names, *extra)


def generation_settings(section) -> dict | None:
    """What a sampling job (rules sample_difficulty, evaluate) uses of ``difficulty:`` / ``evaluation:`` (params):
    samples per question, sampling, backend and, for difficulty, the reasoning instruction; not the level
    thresholds or ``per_job``, which change no sample (a change of them re-runs no sampling). None without
    the section."""
    if section is None:
        return None
    return {k: v for k, v in section.to_dict().items() if k not in ("thresholds", "per_job")}
