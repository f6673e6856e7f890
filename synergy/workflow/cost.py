"""The job graph behind each arm's cost (docs/cost.md §1): which jobs' ``benchmark:`` files add up to what an arm took.

Not a paper section: the paper reports no compute per arm. An arm's cost has four parts, each a list of jobs,
each job named by its rule and its ``benchmark:`` file (``results/<study>/benchmarks/<rule>/...tsv``):

* ``train``      the arm's own job: its SFT or GRPO training, or its merge (none for the base model and a routed arm);
* ``builds_on``  every job the arm's training needs that other arms need not: its parents' trainings (an SFT
                 parent of a two-stage arm, a mixing arm's RL source, the two or three models a merge reads),
                 recursively; the base model's rollouts on the RL queries (``sample_train_pass_rates``) of every
                 arm in that chain that reads them; a mixing arm's mixing set (``build_mixing_set``); a routed arm's
                 two parents' evaluations (it answers with their samples; docs/routing.md) and, with a tune set, that set
                 and both parents' samples of it (``sample_route_tune``);
* ``evaluation`` the arm's own evaluation jobs (k samples per question of every benchmark);
* ``shared``     what every arm stands on: the benchmarks and training sets, the base model (built and
                 pretrained in the embedded study), and the difficulty stage (the base model's samples that
                 give the levels). It is the same list for every arm, counted in full in every arm's
                 end-to-end total (docs/cost.md §2), and once in the study's total.

Jobs without a ``benchmark:`` file (the base-model link and the downloads of the paper study, the gather rules
of sharded stages, the levels, the tables, figures and the report) are not counted; they read and write files
and take seconds. This module never imports snakemake.
"""

from __future__ import annotations

from pathlib import Path

from synergy.config import StudyConfig, arm_parents
from synergy.resources import rule_resources
from synergy.workflow.generation import eval_per_arm, generation_path, shard_count
from synergy.workflow.inputs import needs_base_rollouts, rollout_key, rollout_settings, tokenizer_corpus_paths
from synergy.workflow.paths import EVAL_PER_ARM_PATTERNS

BENCHMARK = "results/{study}/benchmarks/{rule}/{name}.tsv"
STAGES = ("train", "builds_on", "evaluation", "shared")
TRAIN_RULES = {"sft": "train_sft", "mixing": "train_sft", "grpo": "train_grpo", "merge": "merge_models"}


def _job(study: StudyConfig, rule: str, name: str) -> list[str]:
    return [rule, BENCHMARK.format(study=study.name, rule=rule, name=name)]


def _set_job(study: StudyConfig, name: str) -> list[str]:
    """The job that builds or loads train set ``name``."""
    loader = next(t.loader for t in study.train_sets if t.name == name)
    return _job(study, "build_synthetic_train_set" if loader == "synthetic" else "load_train_set", name)


def _sharded(study: StudyConfig, stage: str, rule: str, **wildcards: str) -> list[list[str]]:
    pattern = generation_path(study, stage, "benchmark")
    shards = range(shard_count(study, stage)) if "{shard}" in pattern else [None]
    return [[rule, pattern.format(study=study.name, shard=s, **wildcards)] for s in shards]


def training_jobs(study: StudyConfig, arm: str) -> list[list[str]]:
    """The arm's own job: ``[[rule, benchmark file]]`` ([] for an arm of kind base)."""
    kind = study.arm(arm).kind
    return [] if kind in ("base", "routed") else [_job(study, TRAIN_RULES[kind], arm)]


def _pass_rate_job(study: StudyConfig, arm: str) -> list[list[str]]:
    if not needs_base_rollouts(study, arm):
        return []
    name = f"{study.arm(arm).train_set}.{rollout_key(rollout_settings(study, arm))}"
    return [_job(study, "sample_train_pass_rates", name)]


def upstream_jobs(study: StudyConfig, arm: str) -> list[list[str]]:
    """Every job the arm's training builds on besides the shared stages (module docstring), each once."""
    jobs: list[list[str]] = []

    def visit(name: str, own: bool) -> None:
        if not own:
            jobs.extend(training_jobs(study, name))
        jobs.extend(_pass_rate_job(study, name))
        if study.arm(name).kind == "mixing":
            jobs.append(_job(study, "build_mixing_set", name))
        if study.arm(name).kind == "routed":  # it reads both parents' evaluations (docs/routing.md)
            spec = study.arm(name)
            jobs.extend(j for parent in (spec.fast, spec.slow) for j in evaluation_jobs(study, parent))
            tune = study.arm_settings(name).tune_set
            if tune is not None:  # and both parents' samples of its tune set, where its threshold is chosen
                jobs.append(_set_job(study, tune))
                jobs.extend(_job(study, "sample_route_tune", f"{parent}/{tune}") for parent in (spec.fast, spec.slow))
            if study.arm_settings(name).signal == "confidence":  # the fast arm's scores of its own samples
                jobs.extend(_job(study, "score_confidence", f"{spec.fast}/{b}") for b in study.bench_names)
                if tune is not None:
                    jobs.append(_job(study, "score_confidence_tune", f"{spec.fast}/{tune}"))
        for parent in arm_parents(study.arm(name).to_dict(), study.raw):
            visit(parent, own=False)

    visit(arm, own=True)
    return _unique(jobs)


def evaluation_jobs(study: StudyConfig, arm: str) -> list[list[str]]:
    """The arm's evaluation jobs: one per arm (``evaluation.per_job: arm``) or per benchmark (and shard); a routed
    arm's are its route_answers jobs, one per benchmark."""
    if study.arm(arm).kind == "routed":
        return [_job(study, "route_answers", f"{arm}/{b}") for b in study.bench_names]
    if eval_per_arm(study):
        return [["evaluate", EVAL_PER_ARM_PATTERNS["benchmark"].format(study=study.name, arm=arm)]]
    return [j for b in study.bench_names for j in _sharded(study, "evaluation", "evaluate", arm=arm, bench=b)]


def shared_jobs(study: StudyConfig) -> list[list[str]]:
    """Data, base model and difficulty stage: what every arm stands on."""
    jobs = [_job(study, "build_synthetic_benchmark" if b.loader == "synthetic" else "load_benchmark", b.name)
            for b in study.benchmarks]
    tiny = study.base_model.source == "tiny"
    used = {a.train_set for a in study.arms if a.kind != "base" and a.train_set}
    if tiny:  # the tiny tokenizer reads every training set but a routed arm's held-out tune set
        used |= {Path(p).stem for p in tokenizer_corpus_paths(study)}
    jobs += [_set_job(study, t) for t in study.train_set_names if t in used]
    if tiny:
        jobs.append(_job(study, "build_base_model", "base"))
    for b in study.benchmarks:
        if b.levels == "measured":
            jobs += _sharded(study, "difficulty", "sample_difficulty", bench=b.name)
    return _unique(jobs)


def _unique(jobs: list[list[str]]) -> list[list[str]]:
    seen, out = set(), []
    for rule, path in jobs:
        if path not in seen:
            seen.add(path)
            out.append([rule, path])
    return out


def cost_graph(study: StudyConfig) -> dict:
    """The params of rule tabulate_cost: every arm's jobs by stage, the shared jobs, and the GPUs each rule's
    resources ask for (``resources.<rule>.gpus``, 0 = none)."""
    arms = [{"arm": a.name, "kind": a.kind, "train": training_jobs(study, a.name),
             "builds_on": upstream_jobs(study, a.name), "evaluation": evaluation_jobs(study, a.name)}
            for a in study.arms]
    shared = shared_jobs(study)
    rules = sorted({rule for a in arms for s in ("train", "builds_on", "evaluation") for rule, _ in a[s]}
                   | {rule for rule, _ in shared})
    return {"arms": arms, "shared": shared, "gpus": {r: rule_resources(study.raw, r).gpus for r in rules}}


def cost_inputs(study: StudyConfig) -> list[str]:
    """Every benchmark file the cost table reads (inputs of rule tabulate_cost), each once."""
    graph = cost_graph(study)
    jobs = [j for a in graph["arms"] for s in ("train", "builds_on", "evaluation") for j in a[s]] + graph["shared"]
    return [path for _, path in _unique(jobs)]
