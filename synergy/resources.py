"""Per-rule compute resources from the study config (docs/slurm.md).

The study config's top-level ``resources:`` maps a rule name (or ``default``) to what one job of
that rule needs::

    resources:
      default:      {mem_mb: 4000, runtime: 60}          # every rule not named below
      train_sft:    {gpus: 8, cpus_per_gpu: 8, mem_mb: 400000, runtime: 1440}
      evaluate:     {gpus: 1, cpus_per_gpu: 8, mem_mb: 64000, runtime: 240}

Keys: ``gpus`` (GPUs of one job; 0 = none), ``cpus_per_gpu`` (GPU jobs), ``cpus`` (CPU jobs;
absent: ``compute.threads``), ``mem_mb`` and ``runtime`` (minutes). A rule's entry is laid over
the ``default`` entry key by key. Memory and run time grow with Snakemake's retry attempt
(``attempt * value``: a job killed for memory or time gets twice as much on its first retry).

``snakemake_resources`` turns an entry into the keyword arguments of a rule's ``resources:``
directive in the names snakemake-executor-plugin-slurm 2.8.0 reads: ``mem_mb``, ``runtime``,
and for GPU jobs ``gpu`` (-> ``sbatch --gpus=N``), ``cpus_per_gpu`` (-> ``--cpus-per-gpu``), and,
from the environment (set by the user or the profile, never by the study config: cluster facts live in profiles/),
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


@dataclass(frozen=True)
class RuleResources(_Section):
    """What one job of a rule needs (one entry of ``resources:``, laid over ``default``)."""

    gpus: int = 0
    cpus_per_gpu: int | None = None  # GPU jobs: CPUs per GPU (absent: the cluster's default)
    cpus: int | None = None          # CPU jobs: CPUs of the job (absent: compute.threads)
    mem_mb: int = 4000               # memory of the first attempt (MB)
    runtime: int = 60                # wall time of the first attempt (minutes)

    def __post_init__(self):
        for key in ("gpus", "cpus_per_gpu", "cpus", "mem_mb", "runtime"):
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


def grow(base: int, attempt: int) -> int:
    """The value of a memory / run-time resource at retry ``attempt`` (1 = first try)."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return base * attempt


def _growing(base: int) -> Callable[[Any, int], int]:
    def value(wildcards, attempt: int) -> int:  # the signature Snakemake calls resource functions with
        return grow(base, attempt)

    value.__name__ = f"grow_{base}"
    return value


def snakemake_resources(raw: Mapping[str, Any], rule: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments of the rule's ``resources:`` directive (``resources: **snakemake_resources(...)``)."""
    r = rule_resources(raw, rule)
    out: dict[str, Any] = {"mem_mb": _growing(r.mem_mb), "runtime": _growing(r.runtime)}
    if r.gpus:
        out["gpu"] = r.gpus
        if r.cpus_per_gpu:
            out["cpus_per_gpu"] = r.cpus_per_gpu
        env = env or {}
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


def main(argv=None) -> int:
    """``python -m synergy.resources --configfile STUDY.yaml``: the GPU memory plan of every GPU job (synergy.memory_plan).

    The study file is merged over config/config.yaml as Snakemake merges it. Exit status 1 when a
    job will not fit on one GPU of ``--gpu-memory-gb`` GiB (default ``$SYNERGY_GPU_MEMORY_GB``, else 80).
    """
    import argparse
    from pathlib import Path

    from synergy.config import load_config_file
    from synergy.memory_plan import gpu_memory_gib, plan_study, report

    parser = argparse.ArgumentParser(prog="python -m synergy.resources", description=main.__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="the study config (merged over config/config.yaml)")
    parser.add_argument("--base", default=str(Path(__file__).resolve().parent.parent / "config/config.yaml"),
                        help="the config the study file is merged over (default: config/config.yaml)")
    parser.add_argument("--gpu-memory-gb", type=float, default=None, help="memory of one GPU in GiB")
    args = parser.parse_args(argv)
    study = load_config_file(args.base, args.configfile)
    plans = plan_study(study, gpu_memory_gib(args.gpu_memory_gb))
    print(report(plans))
    return 0 if all(p.fits for p in plans) else 1


if __name__ == "__main__":
    raise SystemExit(main())

