"""Pure helpers of the Snakemake workflow: config -> paths, seeds and targets (DESIGN.md §3).

Rules stay declarative; everything longer than a line lives here and is unit-tested
(tests/test_workflow.py). This module never imports snakemake or torch.
"""

from __future__ import annotations

import os
import zlib

from synergy.config import SetSpec, StudyConfig

BENCH_PATH = "results/data/bench/{bench}.parquet"
TRAIN_PATH = "results/data/train/{set}.parquet"
BASE_MODEL_DIR = "results/models/base"
SAMPLES_PATH = "results/difficulty/{bench}.samples.parquet"
LEVELS_PATH = "results/difficulty/levels.parquet"
TABLE_PATH = "results/tables/{table}.csv"
MODEL_DIR = "results/models/{arm}"
TRAIN_LOG = "results/train_logs/{arm}.parquet"
TRAIN_STATE = "results/train_state/{arm}"
EVAL_PATH = "results/eval/{arm}/{bench}.parquet"
TRAIN_SAMPLES_PATH = "results/difficulty/train/{set}.samples.parquet"
MIXING_PATH = "results/data/mixing/{arm}.parquet"
ARM_TABLES = ("table1_sft_data", "table2_kl", "table3_easy", "table6_synergy", "table7_length")


def bench_spec(study: StudyConfig, bench: str) -> SetSpec:
    for spec in study.benchmarks:
        if spec.name == bench:
            return spec
    raise KeyError(f"no benchmark named {bench!r} in the study config (have {study.bench_names})")


def train_spec(study: StudyConfig, name: str) -> SetSpec:
    for spec in study.train_sets:
        if spec.name == name:
            return spec
    raise KeyError(f"no train set named {name!r} in the study config (have {study.train_set_names})")


def synthetic_bench_paths(study: StudyConfig) -> list[str]:
    """Benchmarks every synthetic training set must be disjoint from."""
    return [BENCH_PATH.format(bench=b.name) for b in study.benchmarks if b.loader == "synthetic"]


def train_templates(study: StudyConfig, spec: SetSpec) -> dict[str, float]:
    """A train set's template weights; ``all`` = every template any benchmark uses, equally weighted."""
    if spec.templates != "all":
        return dict(spec.templates)
    names = sorted({t for b in study.benchmarks if isinstance(b.templates, dict) for t in b.templates})
    return {t: 1.0 for t in names}


def derived_seed(seed: int, *names: str) -> int:
    """A seed for one job, stable when other benchmarks or arms are added or removed."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**31 - 1)


# Sharded generation (synergy/shards.py): the paths of one shard's job; sharding.<stage> = 1 keeps one job.
SHARD_PATTERNS = {
    "difficulty": {"output": "results/difficulty/shards/{bench}/{shard}.samples.parquet",
                   "log": "logs/sample_difficulty/{bench}/{shard}.log",
                   "benchmark": "results/benchmarks/sample_difficulty/{bench}/{shard}.tsv"},
    "evaluation": {"output": "results/eval/shards/{arm}/{bench}/{shard}.parquet",
                   "log": "logs/evaluate/{arm}/{bench}/{shard}.log",
                   "benchmark": "results/benchmarks/evaluate/{arm}/{bench}/{shard}.tsv"},
}
UNSHARDED_PATTERNS = {
    "difficulty": {"output": "results/difficulty/{bench}.samples.parquet",
                   "log": "logs/sample_difficulty/{bench}.log",
                   "benchmark": "results/benchmarks/sample_difficulty/{bench}.tsv"},
    "evaluation": {"output": "results/eval/{arm}/{bench}.parquet",
                   "log": "logs/evaluate/{arm}/{bench}.log",
                   "benchmark": "results/benchmarks/evaluate/{arm}/{bench}.tsv"},
}


# evaluation.per_job: arm -- one job per arm writes every benchmark's UNSHARDED output
EVAL_PER_ARM_PATTERNS = {"log": "logs/evaluate/{arm}.log", "benchmark": "results/benchmarks/evaluate/{arm}.tsv"}


def eval_per_arm(study: StudyConfig) -> bool:
    """Whether one evaluate job per arm covers all benchmarks (``evaluation.per_job: arm``)."""
    return study.evaluation is not None and study.evaluation.per_job == "arm"


def eval_job_outputs(study: StudyConfig) -> list[str]:
    """Output patterns of one evaluate job: every benchmark of ``{arm}`` (per arm), or one file (``{bench}``, ``{shard}``)."""
    if eval_per_arm(study):
        return [EVAL_PATH.replace("{bench}", b) for b in study.bench_names]
    return [generation_path(study, "evaluation", "output")]


def eval_job_path(study: StudyConfig, kind: str) -> str:
    """The log / benchmark pattern of one evaluate job."""
    return EVAL_PER_ARM_PATTERNS[kind] if eval_per_arm(study) else generation_path(study, "evaluation", kind)


def _eval_job_benches(study: StudyConfig, wildcards) -> list[str]:
    return study.bench_names if eval_per_arm(study) else [wildcards.bench]


def eval_bench_inputs(study: StudyConfig, wildcards) -> list[str]:
    """The benchmark files one evaluate job reads, in the order of its outputs."""
    return [BENCH_PATH.format(bench=b) for b in _eval_job_benches(study, wildcards)]


def eval_seeds(study: StudyConfig, wildcards) -> list[int]:
    """One seed per benchmark of the job: the same whether the job covers one benchmark or the arm's all."""
    return [generation_seed(study, "evaluation", wildcards.arm, b, shard=wildcards.get("shard"))
            for b in _eval_job_benches(study, wildcards)]


def arm_priority(study: StudyConfig, arm: str) -> int:
    """Scheduling priority of an arm's training job: 1 + how many trainings or merges wait on it in a row.

    An arm nothing builds on gets 1 (above evaluations and tables, 0: long jobs first); an arm that
    another starts from, samples a mixing set from or merges with gets 1 + its dependants' highest.
    Snakemake starts ready jobs of higher priority first, so the longest chain (e.g. rl -> mixing set
    -> mixing SFT) starts early instead of finishing alone on an otherwise idle machine.
    """
    from synergy.config import arm_parents

    children: dict[str, list[str]] = {a: [] for a in study.arm_names}
    for a in study.arms:
        for parent in arm_parents(a.to_dict(), study.raw):
            children[parent].append(a.name)
    memo: dict[str, int] = {}

    def height(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((height(c) for c in children[name]), default=0)
        return memo[name]

    return height(arm)


def shard_count(study: StudyConfig, stage: str) -> int:
    """Jobs per benchmark of a generation stage (``difficulty`` or ``evaluation``) from ``sharding:``."""
    return int(getattr(study.sharding, stage))


def generation_path(study: StudyConfig, stage: str, kind: str) -> str:
    """The output / log / benchmark path pattern of one generation job: per shard when the stage is sharded."""
    return (SHARD_PATTERNS if shard_count(study, stage) > 1 else UNSHARDED_PATTERNS)[stage][kind]


def shard_paths(study: StudyConfig, stage: str, **wildcards: str) -> list[str]:
    """Every shard's output of one benchmark (and arm), in shard order, for the gather rule."""
    pattern = SHARD_PATTERNS[stage]["output"]
    return [pattern.format(shard=i, **wildcards) for i in range(shard_count(study, stage))]


def shard_of(study: StudyConfig, stage: str, wildcards) -> list[int]:
    """``[index, count]`` of a generation job from its wildcards (``[0, 1]`` when the stage is not sharded)."""
    count = shard_count(study, stage)
    return [int(wildcards.shard), count] if count > 1 else [0, 1]


def generation_seed(study: StudyConfig, stage: str, *names: str, shard=None) -> int:
    """The seed of one generation job; each shard of a sharded stage gets its own."""
    count = shard_count(study, stage)
    extra = [f"shard{int(shard)}of{count}"] if count > 1 else []
    return derived_seed(study.seed, {"difficulty": "difficulty", "evaluation": "eval"}[stage], *names, *extra)


def tokenizer_corpus_paths(study: StudyConfig) -> list[str]:
    """Training sets whose text the tiny tokenizer is trained on (never the benchmarks)."""
    return [TRAIN_PATH.format(set=t.name) for t in study.train_sets]


def level_table_paths() -> list[str]:
    return [TABLE_PATH.format(table="level_counts"), "results/tables/level_counts.md"]


def model_dir(study: StudyConfig, arm: str) -> str:
    """The HF directory of an arm: the base model for kind base, else the arm's own."""
    return BASE_MODEL_DIR if study.arm(arm).kind == "base" else MODEL_DIR.format(arm=arm)


def arms_of_kind(study: StudyConfig, *kinds: str) -> list[str]:
    return [a.name for a in study.arms if a.kind in kinds]


def eval_paths(study: StudyConfig, arms) -> list[str]:
    return [EVAL_PATH.format(arm=a, bench=b) for a in arms for b in study.bench_names]


def merge_grid_arms(study: StudyConfig) -> list[str]:
    """Arms the merge grid reads: the base model, the two parents and every merged arm."""
    m = study.merging
    if m is None:
        return []
    names = ["base", m.rl_arm, m.sft_arm, *(arm for _, _, arm in m.grid())]
    base = [a.name for a in study.arms if a.kind == "base"][:1]
    return list(dict.fromkeys(base + [n for n in names if n in study.arm_names]))


def merge_cells(study: StudyConfig) -> list[dict]:
    """The merge grid's cells: method, SFT ratio and the arm whose evaluations fill it."""
    if study.merging is None:
        return []
    return [{"method": m, "sft_ratio": float(r), "arm": a} for m, r, a in study.merging.grid()]


def table_arms(study: StudyConfig, table: str) -> list[str]:
    """The arms a table shows: those the config lists for it; level_accuracy shows every arm."""
    if table == "level_accuracy":
        return study.arm_names
    if table == "merge_grid":
        return merge_grid_arms(study)
    return list(study.tables[table])


def table_names(study: StudyConfig) -> list[str]:
    if not study.arms:
        return []
    return [*study.tables, *(["merge_grid"] if study.merging is not None else []), "level_accuracy"]


def grpo_inputs(study: StudyConfig, arm: str) -> dict[str, str]:
    """Extra inputs of a GRPO arm: the base model's rollouts on its queries when it drops easy ones or
    when a hybrid arm decides zero-pass questions offline (paper §2.2, §3.1)."""
    spec = study.arm(arm)
    s = study.arm_settings(arm)
    if s.drop_easy or (s.hybrid != "none" and s.zero_pass == "offline"):
        return {"base_samples": TRAIN_SAMPLES_PATH.format(set=spec.train_set)}
    return {}


def sft_data_path(study: StudyConfig, arm: str) -> str:
    """The rows an SFT-style arm trains on: its train set, or for kind mixing the mixed set built for it."""
    spec = study.arm(arm)
    if spec.kind == "mixing":
        return MIXING_PATH.format(arm=arm)
    return TRAIN_PATH.format(set=spec.train_set)


def merge_inputs(study: StudyConfig, arm: str) -> dict[str, str]:
    """The model folders a merged arm is computed from: rl, sft and (TIES) base."""
    spec, m = study.arm(arm), study.merging
    if spec.kind != "merge" or m is None:
        raise KeyError(f"arm {arm!r} is not a merged arm")
    out = {"rl": model_dir(study, m.rl_arm), "sft": model_dir(study, m.sft_arm)}
    if spec.method == "ties":
        out["base"] = model_dir(study, m.base_arm)
    return out


def merge_settings(study: StudyConfig, arm: str) -> dict:
    """Method, SFT ratio and the method's settings of a merged arm (params of rule merge_models)."""
    spec, m = study.arm(arm), study.merging
    return {"method": spec.method, "sft_ratio": float(spec.sft_ratio), "density": m.ties.density,
            "scale": m.ties.scale, "dot_threshold": m.slerp.dot_threshold}


def vllm_params(study: StudyConfig, backend: str) -> dict:
    """The ``vllm:`` section for a job whose generation backend is ``backend`` ({} for hf, so that a change of the
    vLLM settings never re-runs the jobs that do not use it)."""
    return dict(study.raw.get("vllm") or {}) if backend == "vllm" else {}


def conda_env(backend: str) -> str:
    """The conda env file (relative to rules/) of a job: envs/gpu.yaml (vLLM's torch) for the vllm backend, else
    envs/cpu.yaml (also right for GPU training: PyPI's torch wheel runs on CUDA). Used with ``--sdm conda``."""
    return "../envs/gpu.yaml" if backend == "vllm" else "../envs/cpu.yaml"


def final_targets(study: StudyConfig) -> list[str]:
    """What ``snakemake`` builds with no target: every table, every figure and results/figures/all.pdf."""
    from synergy.report.targets import figure_targets

    tables = [TABLE_PATH.format(table=t) for t in table_names(study)]
    return level_table_paths() + tables + figure_targets(study)


def job_environment(study: StudyConfig) -> dict[str, str]:
    """Environment every job of the study gets: ``SYNERGY_TRUST_REMOTE_CODE`` from ``base_model.trust_remote_code``.

    (The name is ``synergy.models.TRUST_REMOTE_CODE_ENV``; spelled out here so this module stays free of torch.)
    """
    return {"SYNERGY_TRUST_REMOTE_CODE": "1" if study.base_model.trust_remote_code else "0"}


def export_job_environment(study: StudyConfig) -> None:
    """Put ``job_environment(study)`` into this process's environment, which the jobs it starts inherit."""
    os.environ.update(job_environment(study))
