"""What the data, training and merge rules read, and their per-job seeds and settings (config -> paths, params)."""

from __future__ import annotations

import hashlib
import json
import zlib

from synergy.config import SetSpec, StudyConfig
from synergy.workflow.external import external_model_dir
from synergy.workflow.paths import (
    BASE_MODEL_DIR,
    BENCH_PATH,
    CONFIDENCE_PATH,
    CONFIDENCE_TUNE_PATH,
    EVAL_PATH,
    MIXING_PATH,
    MODEL_DIR,
    TRAIN_PATH,
    TRAIN_SAMPLES_PATH,
    TUNE_PATH,
)


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
    return [BENCH_PATH.format(study=study.name, bench=b.name) for b in study.benchmarks if b.loader == "synthetic"]


def train_templates(study: StudyConfig, spec: SetSpec) -> dict[str, float]:
    """A train set's template weights; ``all`` = every template any benchmark uses, equally weighted."""
    if spec.templates != "all":
        return dict(spec.templates)
    names = sorted({t for b in study.benchmarks if isinstance(b.templates, dict) for t in b.templates})
    return {t: 1.0 for t in names}


def derived_seed(seed: int, *names: str) -> int:
    """A seed for one job, stable when other benchmarks or arms are added or removed."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**31 - 1)


def tokenizer_corpus_paths(study: StudyConfig) -> list[str]:
    """Training sets whose text the tiny tokenizer is trained on: never the benchmarks, nor a set that only serves to
    choose a routed arm's threshold (held out from every model, the base model's tokenizer included)."""
    held_out = {study.arm_settings(a.name).tune_set for a in study.arms if a.kind == "routed"}
    trained = {a.train_set for a in study.arms}
    return [TRAIN_PATH.format(study=study.name, set=t.name) for t in study.train_sets
            if t.name not in held_out or t.name in trained]


def model_dir(study: StudyConfig, arm: str) -> str:
    """The HF directory of an arm: the base model for kind base, an external arm's folder, else the arm's own."""
    if study.external(arm) is not None:
        return external_model_dir(study, arm)
    if study.arm(arm).kind == "base":
        return BASE_MODEL_DIR.format(study=study.name)
    return MODEL_DIR.format(study=study.name, arm=arm)


def arms_of_kind(study: StudyConfig, *kinds: str) -> list[str]:
    return [a.name for a in study.arms if a.kind in kinds]


def model_arms(study: StudyConfig) -> list[str]:
    """Arms with a model of their own, evaluated by rule evaluate (every kind but routed)."""
    return [a.name for a in study.arms if a.kind != "routed"]


def routed_inputs(study: StudyConfig, arm: str, bench: str) -> dict[str, str]:
    """The two evaluations a routed arm reads on one benchmark, its fast and its slow arm's, and, with a tune set,
    both arms' samples of it (the threshold is chosen there: docs/routing.md §3); with the ``confidence`` signal,
    the fast arm's scores of its samples there too (``scores``, ``tune_scores``: docs/routing.md §1)."""
    spec = study.arm(arm)
    out = {"fast": EVAL_PATH.format(study=study.name, arm=spec.fast, bench=bench),
           "slow": EVAL_PATH.format(study=study.name, arm=spec.slow, bench=bench)}
    settings = study.arm_settings(arm)
    confident = settings.signal == "confidence"
    if confident:
        out["scores"] = CONFIDENCE_PATH.format(study=study.name, arm=spec.fast, bench=bench)
    tune = settings.tune_set
    if tune is not None:
        out["tune_fast"] = TUNE_PATH.format(study=study.name, arm=spec.fast, set=tune)
        out["tune_slow"] = TUNE_PATH.format(study=study.name, arm=spec.slow, set=tune)
        if confident:
            out["tune_scores"] = CONFIDENCE_TUNE_PATH.format(study=study.name, arm=spec.fast, set=tune)
    return out


def confidence_scored(study: StudyConfig) -> dict[str, set[str]]:
    """Fast arm of a routed arm whose signal is ``confidence`` -> the tune sets it is scored on (maybe none)."""
    out: dict[str, set[str]] = {}
    for a in study.arms:
        if a.kind == "routed" and study.arm_settings(a.name).signal == "confidence":
            tunes = out.setdefault(a.fast, set())
            if study.arm_settings(a.name).tune_set is not None:
                tunes.add(study.arm_settings(a.name).tune_set)
    return out


def tune_samples(study: StudyConfig) -> dict[str, set[str]]:
    """Tune set -> the arms sampled on it (the parents of the routed arms that choose their threshold there)."""
    out: dict[str, set[str]] = {}
    for a in study.arms:
        if a.kind == "routed" and study.arm_settings(a.name).tune_set is not None:
            out.setdefault(study.arm_settings(a.name).tune_set, set()).update((a.fast, a.slow))
    return out


def routing_files(study: StudyConfig) -> dict[str, dict]:
    """Per routed arm, what its sweep (the routing_sweep table) reads: the fast and slow arm's evaluation on every
    benchmark, and their samples of the tune set when it has one (with the confidence signal, the fast arm's
    scores of each too)."""
    out = {}
    for a in study.arms:
        if a.kind == "routed":
            per = [routed_inputs(study, a.name, b) for b in study.bench_names]
            out[a.name] = {"fast": [x["fast"] for x in per], "slow": [x["slow"] for x in per],
                           **({"scores": [x["scores"] for x in per]} if "scores" in per[0] else {}),
                           **{k: v for k, v in per[0].items() if k.startswith("tune_")}} if per else {}
    return out


def routing_params(study: StudyConfig, arm: str) -> dict:
    """What rule route_answers needs: the two arms and the routing settings (signal, threshold, tune set)."""
    spec = study.arm(arm)
    return {"fast": spec.fast, "slow": spec.slow, **study.arm_settings(arm).to_dict()}


def eval_paths(study: StudyConfig, arms) -> list[str]:
    return [EVAL_PATH.format(study=study.name, arm=a, bench=b) for a in arms for b in study.bench_names]


# The base model's G rollouts on an arm's training queries (rule sample_train_pass_rates) are sampled with
# the arm's own rollout settings; arms that share a train set and these settings share one file.
ROLLOUT_FIELDS = ("num_generations", "temperature", "top_p", "top_k", "max_new_tokens", "reasoning_instruction")


def needs_base_rollouts(study: StudyConfig, arm: str) -> bool:
    """Whether a GRPO arm reads the base model's rollouts: it drops the easy queries (paper §2.2), or it is
    a hybrid arm that decides zero-pass questions offline (§3.1)."""
    if study.arm(arm).kind != "grpo":
        return False
    s = study.arm_settings(arm)
    return s.drop_easy or (s.hybrid != "none" and s.zero_pass == "offline")


def rollout_settings(study: StudyConfig, arm: str) -> dict:
    """The settings an arm's rollouts are sampled with (``ROLLOUT_FIELDS`` of its GRPO settings)."""
    s = study.arm_settings(arm)
    return {k: getattr(s, k) for k in ROLLOUT_FIELDS}


def rollout_key(settings: dict) -> str:
    """A short, stable name of one rollout setting: 8 hex digits of the hash of ``ROLLOUT_FIELDS``."""
    blob = json.dumps({k: settings[k] for k in ROLLOUT_FIELDS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def train_samples_path(study: StudyConfig, arm: str) -> str:
    """The file of the base model's rollouts an arm reads (one per train set and distinct rollout setting)."""
    return TRAIN_SAMPLES_PATH.format(study=study.name, set=study.arm(arm).train_set, rollout=rollout_key(rollout_settings(study, arm)))


def pass_rate_settings(study: StudyConfig, train_set: str, key: str) -> dict:
    """The rollout settings of job ``(train_set, key)`` of rule sample_train_pass_rates (params), from the arms
    that read it; ``KeyError`` when no arm does."""
    for arm in study.arm_names:
        if needs_base_rollouts(study, arm) and study.arm(arm).train_set == train_set:
            settings = rollout_settings(study, arm)
            if rollout_key(settings) == key:
                return settings
    raise KeyError(f"no GRPO arm reads the base model's rollouts on train set {train_set!r} with settings {key!r}")


def grpo_inputs(study: StudyConfig, arm: str) -> dict[str, str]:
    """Extra inputs of a GRPO arm: the base model's rollouts on its queries, sampled with the arm's rollout
    settings, when it needs them (``needs_base_rollouts``)."""
    if needs_base_rollouts(study, arm):
        return {"base_samples": train_samples_path(study, arm)}
    return {}


def sft_data_path(study: StudyConfig, arm: str) -> str:
    """The rows an SFT-style arm trains on: its train set, or for kind mixing the mixed set built for it."""
    spec = study.arm(arm)
    if spec.kind == "mixing":
        return MIXING_PATH.format(study=study.name, arm=arm)
    return TRAIN_PATH.format(study=study.name, set=spec.train_set)


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
            "scale": m.ties.scale, "dot_threshold": m.slerp.dot_threshold, "backend": m.backend}


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
