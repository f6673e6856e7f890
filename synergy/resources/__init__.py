"""Per-rule compute resources from the study config (docs/slurm.md).

The study config's top-level ``resources:`` maps a rule name (or ``default``) to what one job of
that rule needs::

    resources:
      default:      {mem_mb: 4000, runtime: 60}          # every rule not named below
      train_sft:    {gpus: 8, cpus_per_gpu: 8, mem_mb: 400000, runtime: 1440}
      evaluate:     {gpus: 1, cpus_per_gpu: 8, mem_mb: 64000, runtime: 240}

Keys: ``gpus`` (GPUs of one job; 0 = none), ``cpus_per_gpu`` (GPU jobs), ``cpus`` (CPU jobs;
absent: ``compute.threads``), ``mem_mb`` and ``runtime`` (minutes), ``max_mem_mb`` and ``max_runtime`` (caps).
A rule's entry is laid over the ``default`` entry key by key.

Retries (``retries:`` in the profile): memory grows with Snakemake's attempt (``attempt * mem_mb``: a job
killed for memory gets twice as much on its first retry) up to ``max_mem_mb`` and never past it; a cluster
rejects a submission larger than its nodes, and the plugin then stops the whole run. The run time of the
training rules (``RESUMING_RULES``) does not grow: a retried training resumes from its last saved state and
needs no more time than the first attempt had. Other rules' run time grows like memory, up to ``max_runtime``.
The caps come from the study config (``max_mem_mb`` / ``max_runtime`` of the rule or ``default``) and from
the environment (``SYNERGY_SLURM_MAX_MEM_MB`` / ``SYNERGY_SLURM_MAX_RUNTIME``: the cluster's largest node
and partition time limit, a profile's fact); with both, the smaller wins. A first attempt above its cap is a
config error, raised when the DAG is built.

``snakemake_resources`` turns an entry into the keyword arguments of a rule's ``resources:``
directive in the names snakemake-executor-plugin-slurm 2.8.0 reads: ``mem_mb``, ``runtime``,
and for GPU jobs ``gpu`` (-> ``sbatch --gpus=N``), ``cpus_per_gpu`` (-> ``--cpus-per-gpu``), and,
from the environment (set by the user or the profile, never by the study config: cluster facts live in profiles/),
``nodes: 1`` (training starts all its processes on one node: Slurm must not split the GPUs over nodes),
``gpu_model`` (``SYNERGY_SLURM_GPU_MODEL`` -> ``--gpus=<model>:N``) and ``slurm_partition``
(``SYNERGY_SLURM_GPU_PARTITION``). CPU jobs get their partition and account from the profile's
``default-resources``. ``rule_threads`` is a rule's ``threads:``: ``cpus`` for CPU jobs,
``gpus * cpus_per_gpu`` for GPU jobs (the plugin then asks for ``--cpus-per-gpu``, not per task).
A GPU job runs one launcher process that starts one training process per GPU (synergy.launch).

Locally (``profiles/local``) the same numbers are inert unless ``--resources`` caps them
(e.g. ``--resources gpu=1`` on a one-GPU workstation). This module never imports snakemake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from synergy.config import ConfigError, _Section

DEFAULT = "default"
GPU_PARTITION_ENV = "SYNERGY_SLURM_GPU_PARTITION"
GPU_MODEL_ENV = "SYNERGY_SLURM_GPU_MODEL"
MAX_MEM_ENV = "SYNERGY_SLURM_MAX_MEM_MB"
MAX_RUNTIME_ENV = "SYNERGY_SLURM_MAX_RUNTIME"
# Rules whose job resumes from its saved training state on a retry (synergy.train): run time does not grow.
RESUMING_RULES = frozenset({"train_sft", "train_grpo"})


@dataclass(frozen=True)
class RuleResources(_Section):
    """What one job of a rule needs (one entry of ``resources:``, laid over ``default``)."""

    gpus: int = 0
    cpus_per_gpu: int | None = None  # GPU jobs: CPUs per GPU (absent: the cluster's default)
    cpus: int | None = None          # CPU jobs: CPUs of the job (absent: compute.threads)
    mem_mb: int = 4000               # memory of the first attempt (MB)
    runtime: int = 60                # wall time of the first attempt (minutes)
    max_mem_mb: int | None = None    # memory never grows past this on a retry (MB)
    max_runtime: int | None = None   # run time never grows past this on a retry (minutes)

    def __post_init__(self):
        for key in ("gpus", "cpus_per_gpu", "cpus", "mem_mb", "runtime", "max_mem_mb", "max_runtime"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"config key 'resources.*.{key}' must be an integer, got {value!r}")
            if value < (0 if key == "gpus" else 1):
                raise ConfigError(f"config key 'resources.*.{key}' must be >= {0 if key == 'gpus' else 1}, got {value}")


def rule_resources(raw: Mapping[str, Any], rule: str) -> RuleResources:
    """The ``default`` entry of ``raw['resources']`` with the rule's own entry laid over it."""
    section = raw.get("resources") or {}
    merged = dict(section.get(DEFAULT) or {})
    merged.update(section.get(rule) or {})
    return RuleResources.from_dict(merged, f"resources.{rule}")


def rule_threads(raw: Mapping[str, Any], rule: str, default: int | None = None) -> int:
    """A rule's ``threads:``: ``gpus * cpus_per_gpu`` for GPU jobs, else ``cpus``, else ``default``
    (None: ``compute.threads``; light rules pass 1)."""
    r = rule_resources(raw, rule)
    if r.gpus and r.cpus_per_gpu:
        return r.gpus * r.cpus_per_gpu
    if r.cpus is not None:
        return r.cpus
    return int(raw["compute"]["threads"]) if default is None else default


def grow(base: int, attempt: int, cap: int | None = None) -> int:
    """The value of a memory / run-time resource at retry ``attempt`` (1 = first try), never above ``cap``."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return base * attempt if cap is None else min(base * attempt, cap)


def _growing(base: int, cap: int | None) -> Callable[[Any, int], int]:
    def value(wildcards, attempt: int) -> int:  # the signature Snakemake calls resource functions with
        return grow(base, attempt, cap)

    value.__name__ = f"grow_{base}" + (f"_to_{cap}" if cap is not None else "")
    return value


def _cap(config_cap: int | None, env: Mapping[str, str], name: str) -> int | None:
    caps = [c for c in (config_cap, env.get(name)) if c not in (None, "")]
    try:
        return min(int(c) for c in caps) if caps else None
    except ValueError:
        raise ConfigError(f"environment variable {name}={env.get(name)!r} is not a whole number") from None


def retry_caps(raw: Mapping[str, Any], rule: str, env: Mapping[str, str] | None = None) -> tuple[int | None, int | None]:
    """``(max_mem_mb, max_runtime)`` of a rule: the config's and the environment's, the smaller of the two."""
    r, env = rule_resources(raw, rule), env or {}
    return _cap(r.max_mem_mb, env, MAX_MEM_ENV), _cap(r.max_runtime, env, MAX_RUNTIME_ENV)


def snakemake_resources(raw: Mapping[str, Any], rule: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments of the rule's ``resources:`` directive (``resources: **snakemake_resources(...)``)."""
    r, env = rule_resources(raw, rule), env or {}
    mem_cap, time_cap = retry_caps(raw, rule, env)
    for key, base, cap in (("mem_mb", r.mem_mb, mem_cap), ("runtime", r.runtime, time_cap)):
        if cap is not None and base > cap:
            names = "max_mem_mb or " + MAX_MEM_ENV if key == "mem_mb" else "max_runtime or " + MAX_RUNTIME_ENV
            raise ConfigError(f"config key 'resources.{rule}.{key}': {base} is above its cap {cap} ({names})")
    runtime = r.runtime if rule in RESUMING_RULES else _growing(r.runtime, time_cap)
    out: dict[str, Any] = {"mem_mb": _growing(r.mem_mb, mem_cap), "runtime": runtime}
    if r.gpus:
        out["gpu"] = r.gpus
        out["nodes"] = 1  # one node: training starts every process of the job on it (synergy.launch)
        if r.cpus_per_gpu:
            out["cpus_per_gpu"] = r.cpus_per_gpu
        if env.get(GPU_MODEL_ENV):
            out["gpu_model"] = env[GPU_MODEL_ENV]
        if env.get(GPU_PARTITION_ENV):
            out["slurm_partition"] = env[GPU_PARTITION_ENV]
    return out


def gpu_processes(resources: Mapping[str, Any]) -> int:
    """Training processes of a job from its evaluated Snakemake resources: one per GPU, at least one."""
    return max(1, int(resources.get("gpu", 0) or 0))


def check_rule_names(raw: Mapping[str, Any], rules: Iterable[str]) -> None:
    """Raise ConfigError if ``resources:`` names a rule the workflow does not have (a typo would be ignored)."""
    known = set(rules)
    unknown = sorted(set(raw.get("resources") or {}) - known - {DEFAULT})
    if unknown:
        raise ConfigError(f"config key 'resources.{unknown[0]}': no rule named {unknown[0]!r} "
                          f"(rules: {sorted(known)})")


def resource_plan(raw: Mapping[str, Any], jobs: Mapping[str, int]) -> list[dict]:
    """Per rule of a DAG (``jobs``: rule -> job count): GPUs and run-time limit of one job, and the GPU-hours and
    CPU-hours the rule may take at most (first attempts at their full ``runtime``; a bound, not a measurement)."""
    rows = []
    for rule, n in jobs.items():
        r = rule_resources(raw, rule)
        hours = n * r.runtime / 60
        cpus = (r.gpus * (r.cpus_per_gpu or 1)) if r.gpus else (r.cpus or int(raw["compute"]["threads"]))
        rows.append({"rule": rule, "jobs": n, "gpus": r.gpus, "runtime_min": r.runtime,
                     "gpu_hours": hours * r.gpus, "cpu_hours": hours * cpus})
    return sorted(rows, key=lambda x: (-x["gpu_hours"], -x["cpu_hours"], x["rule"]))


def check_process_split(raw: Mapping[str, Any]) -> None:
    """Raise ConfigError before any job if a GRPO arm's ``mini_batch_size`` cannot be split over the training
    processes of its job (one per GPU of ``resources.train_grpo``; each process takes an equal share of every
    mini-batch), instead of the job failing on the cluster once it has started."""
    procs = max(1, rule_resources(raw, "train_grpo").gpus)
    base = (raw.get("grpo") or {}).get("mini_batch_size")
    for arm in raw.get("arms") or []:
        if arm.get("kind") != "grpo":
            continue
        mb = (arm.get("settings") or {}).get("mini_batch_size", base)
        if isinstance(mb, int) and mb % procs:
            raise ConfigError(f"config key 'grpo.mini_batch_size' (arm {arm.get('name')!r}): {mb} is not a multiple of "
                              f"the {procs} training processes of a train_grpo job (resources.train_grpo.gpus)")
