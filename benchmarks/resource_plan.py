"""GPU-hours a study asks for, from its DAG and its ``resources:`` (an upper bound: every job at its run-time limit).

    python benchmarks/resource_plan.py                       # config/paper.yaml
    python benchmarks/resource_plan.py config/smoke.yaml

Counts the jobs of each rule with ``snakemake -n`` (nothing runs) and multiplies by the rule's GPUs and
``runtime`` (synergy.resources.resource_plan). Retries and requeued jobs come on top; a job that ends early
uses less. README "Expected times" quotes the paper study's total.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synergy.config import load_config_file  # noqa: E402
from synergy.resources import resource_plan  # noqa: E402


def job_counts(config: Path) -> dict[str, int]:
    out = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "--forceall", "--quiet", "rules",
                          "-d", "/tmp", "-s", str(ROOT / "Snakefile"), "--configfile", str(config)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M) if k != "total"}


def main(argv: list[str]) -> None:
    config = Path(argv[1]) if len(argv) > 1 else ROOT / "config/paper.yaml"
    raw = load_config_file(ROOT / "config/config.yaml", config).raw
    rows = resource_plan(raw, job_counts(config))
    print(f"{'rule':26} {'jobs':>5} {'gpus':>4} {'limit h':>8} {'GPU-h':>9} {'CPU-h':>9}")
    for r in rows:
        print(f"{r['rule']:26} {r['jobs']:5d} {r['gpus']:4d} {r['runtime_min'] / 60:8.1f} {r['gpu_hours']:9.0f} "
              f"{r['cpu_hours']:9.0f}")
    print(f"{'total':26} {sum(r['jobs'] for r in rows):5d} {'':4} {'':8} {sum(r['gpu_hours'] for r in rows):9.0f} "
          f"{sum(r['cpu_hours'] for r in rows):9.0f}")


if __name__ == "__main__":
    main(sys.argv)
