"""DAG tier: the Slurm profiles build both studies' DAGs with no Slurm, and route the cluster knobs."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def dry_run(profile: str, *args: str, **env: str) -> dict[str, dict[str, str]]:
    """``snakemake -n --forceall`` through a profile: the resources of each rule's first job."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNERGY_SLURM_")}
    out = subprocess.run([SNAKEMAKE, "-n", "--forceall", "--profile", profile, *args], cwd=ROOT, text=True,
                         capture_output=True, env={**clean, **env})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert f"Using profile {profile}" in text
    jobs = {}
    for rule, body in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", text, re.M):
        m = re.search(r"^    resources: (.*)$", body, re.M)
        jobs.setdefault(rule, dict(kv.split("=", 1) for kv in m.group(1).split(", ")) if m else {})
    return jobs


def test_the_slurm_profile_dry_runs_the_embedded_study_with_no_slurm():
    jobs = dry_run("profiles/slurm")
    assert {"train_sft", "train_grpo", "evaluate", "sample_difficulty"} <= set(jobs)
    assert jobs["evaluate"]["mem_mb"] == "4000" and jobs["evaluate"]["runtime"] == "60"
    assert not any("gpu" in r or "slurm_account" in r or "slurm_partition" in r for r in jobs.values())


def test_the_environment_sets_account_partitions_and_gpu_model():
    jobs = dry_run("profiles/slurm", "--configfile", "config/smoke.yaml", SYNERGY_SLURM_ACCOUNT="acme",
                   SYNERGY_SLURM_PARTITION="short", SYNERGY_SLURM_GPU_PARTITION="gpus", SYNERGY_SLURM_GPU_MODEL="a100")
    cpu, gpu = jobs["evaluate"], jobs["train_sft"]
    assert (cpu["slurm_account"], cpu["slurm_partition"], cpu["mem_mb"]) == ("acme", "short", "2000")
    assert "gpu" not in cpu and "gpu_model" not in cpu
    assert (gpu["slurm_account"], gpu["slurm_partition"], gpu["gpu"], gpu["gpu_model"], gpu["cpus_per_gpu"]) == \
        ("acme", "gpus", "1", "a100", "1")


def test_the_test_cluster_profile_defaults_to_its_own_partitions():
    jobs = dry_run("profiles/slurm-local", "--configfile", "config/smoke.yaml")
    assert (jobs["evaluate"]["slurm_account"], jobs["evaluate"]["slurm_partition"]) == ("ci", "cpu")
    assert (jobs["train_sft"]["slurm_partition"], jobs["train_sft"]["gpu_model"]) == ("gpu", "fake")
