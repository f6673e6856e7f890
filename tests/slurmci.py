"""Test helpers for the real Slurm test cluster of .ci/slurm-up.sh (docs/slurm.md); not a test module.

Whether a test uses the cluster (``SYNERGY_SLURM_CI``):

* ``1`` (set by ``.ci/run``): the cluster is required; a test that needs it FAILS when it is missing;
* ``0``: never; Slurm tests skip, the smoke study runs locally;
* unset (a developer machine): used when it is up (``sudo bash .ci/slurm-up.sh``), else Slurm tests
  skip and say why.

The smoke study (config/smoke.yaml) runs ONCE per test session (``smoke_run``), through the cluster
with ``--profile profiles/slurm-local`` when it is used, else locally with ``profiles/local``; the
end-to-end tests (tests/test_e2e.py) check its outputs and tests/test_slurm.py its Slurm jobs, so the
Slurm run replaces the local one rather than adding to it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from tiny_study import snakemake_cmd as study_cmd
from tiny_study import tiny_study

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CLUSTER = "synergyci"  # ClusterName of .ci/slurm-up.sh
ENV = "SYNERGY_SLURM_CI"
TOOLS = ("sbatch", "sacct", "scancel", "squeue", "scontrol", "sinfo")
SMOKE_TIMEOUT_S = {"local": 900, "slurm": 1500}


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@lru_cache(maxsize=1)
def cluster_problem() -> str | None:
    """None if the test cluster of .ci/slurm-up.sh answers (slurmctld, slurmdbd, both partitions), else why not."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH (no Slurm client installed)"
    try:
        conf = _run(["scontrol", "show", "config"])
        if conf.returncode != 0:
            return f"slurmctld does not answer: scontrol show config: {(conf.stderr or conf.stdout).strip()[:300]}"
        name = re.search(r"^ClusterName\s*=\s*(\S+)", conf.stdout, re.M)
        if not name or name.group(1) != CLUSTER:
            return (f"the Slurm cluster here is {name.group(1) if name else '?'!r}, not the test cluster "
                    f"{CLUSTER!r} of .ci/slurm-up.sh (these tests submit jobs with account `ci`)")
        acct = _run(["sacct", "-X", "-n", "-P", "-S", "now-1minutes", "-o", "JobID"])
        if acct.returncode != 0:
            return f"sacct fails (slurmdbd down?): {acct.stderr.strip()[:300]}"
        parts = _run(["sinfo", "-h", "-o", "%R %a %G"]).stdout.split("\n")
        have = {p.split()[0] for p in parts if p.strip() and p.split()[1] == "up"}
        if not {"cpu", "gpu"} <= have or "gpu:fake" not in " ".join(parts):
            return f"partitions cpu and gpu with fake GPUs expected, sinfo shows {parts}"
    except subprocess.TimeoutExpired as e:
        return f"{' '.join(e.cmd)} timed out"
    return None


def slurm_mode() -> str:
    """``required``, ``available``, or ``off`` (SYNERGY_SLURM_CI=0 or no cluster)."""
    flag = os.environ.get(ENV, "").strip()
    if flag == "1":
        return "required"
    if flag == "0":
        return "off"
    return "available" if cluster_problem() is None else "off"


def require_cluster() -> None:
    """Fail (SYNERGY_SLURM_CI=1) or skip (otherwise) the calling test unless the test cluster is up."""
    flag = os.environ.get(ENV, "").strip()
    if flag == "0":
        pytest.skip(f"{ENV}=0: the Slurm tests are turned off")
    problem = cluster_problem()
    if problem is None:
        return
    if flag == "1":
        pytest.fail(f"{ENV}=1 but the Slurm test cluster is not usable: {problem}. "
                    "CI brings it up with .ci/slurm-up.sh (see .ci/run, docs/slurm.md)", pytrace=False)
    pytest.skip(f"no Slurm test cluster: {problem}. Bring one up with `sudo bash .ci/slurm-up.sh` "
                f"(docs/slurm.md), or set {ENV}=1 to make this a failure")


def job_env() -> dict:
    """Environment of a Snakemake run; sbatch exports it to every job (--export=ALL), so jobs import this
    checkout's synergy with this interpreter."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


@dataclass
class SmokeRun:
    wd: Path
    cmd: list[str]
    slurm: bool
    seconds: float
    started: str        # sacct -S value: a little before the run
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    extra: dict = field(default_factory=dict)


_SMOKE: dict[str, SmokeRun] = {}


def smoke_run(tmp_path_factory) -> SmokeRun:
    """The smoke study, run once per session (through Slurm when it is used); fails the caller if it failed."""
    if "run" not in _SMOKE:
        mode = slurm_mode()
        if mode == "required":
            require_cluster()  # fails with the reason before a 25-minute run could
        slurm = mode != "off"
        wd = tmp_path_factory.mktemp("smoke")
        profile = "profiles/slurm-local" if slurm else "profiles/local"
        cmd = study_cmd(wd, "--profile", str(ROOT / profile), configs=[ROOT / "config/smoke.yaml"], base=False)
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
        t0 = time.monotonic()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env=job_env(),
                                 timeout=SMOKE_TIMEOUT_S["slurm" if slurm else "local"])
            error = None if out.returncode == 0 else f"smoke study failed ({profile}):\n{out.stderr[-6000:]}"
            stdout, stderr = out.stdout, out.stderr
        except subprocess.TimeoutExpired as e:
            stdout, stderr = str(e.stdout or ""), str(e.stderr or "")
            error = f"smoke study ({profile}) timed out after {e.timeout} s:\n{stderr[-4000:]}"
        run = SmokeRun(wd, cmd, slurm, time.monotonic() - t0, started, stdout, stderr, error)
        (wd / "smoke_run_seconds.txt").write_text(f"{profile} {run.seconds:.1f}\n")
        print(f"\nsmoke study through {profile}: {run.seconds:.1f} s", file=sys.stderr)
        _SMOKE["run"] = run
    run = _SMOKE["run"]
    if run.error:
        pytest.fail(run.error, pytrace=False)
    return run


# ---------------------------------------------------------------------------------------------- sacct


SACCT_FIELDS = ["JobID", "JobIDRaw", "JobName", "State", "Partition", "Account", "AllocTRES", "WorkDir", "Comment"]


def sacct_jobs(wd: Path, started: str) -> list[dict]:
    """Every Slurm job (allocation, not step) started in ``wd`` since ``started``, as dicts of SACCT_FIELDS."""
    out = _run(["sacct", "-X", "-n", "-P", "--clusters", CLUSTER, "-S", started, "-E", "now",
                "-o", ",".join(SACCT_FIELDS)])
    assert out.returncode == 0, out.stderr
    rows = [dict(zip(SACCT_FIELDS, line.split("|", len(SACCT_FIELDS) - 1))) for line in out.stdout.splitlines()
            if line.strip()]
    return [r for r in rows if Path(r["WorkDir"]).resolve() == Path(wd).resolve()]


def rule_of(comment: str) -> str:
    """The rule named in a job's comment (the plugin writes ``rule_<rule>[_wildcards_<values>]``)."""
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment)
    assert m, f"not a Snakemake job comment: {comment!r}"
    return m.group(1)


def job_stats(log: str) -> Counter:
    """The 'Job stats' table Snakemake prints before it runs anything: rule -> jobs (the whole DAG)."""
    m = re.search(r"^Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", log, re.S | re.M)
    assert m, "no 'Job stats' table in the Snakemake output"
    stats = Counter({name: int(n) for name, n in re.findall(r"^(\S+)\s+(\d+)$", m.group(1), re.M)})
    assert sum(stats.values()) == int(m.group(2))
    return stats


def local_jobs(log: str) -> Counter:
    """rule -> jobs Snakemake ran on the submitting machine (``localrule <rule>:``)."""
    return Counter(re.findall(r"^localrule (\S+):$", log, re.M))


# ------------------------------------------------------------------------------ training studies

SFT_ARM = "sft-long"
GRPO_ARM = "rl-nodefail"
GRPO_STEPS = 24

# A very small study (merged over config/config.yaml): one SFT arm of 61 rows in batches of 4, 16 steps
# per epoch, 3 epochs = 48 steps with a full training state saved after every step; the arm asks
# for one (fake) GPU so the cancelled job is a GPU job. One GRPO arm on the same rows: 24 steps of
# 2 prompts x 4 rollouts, a state after every step; interleaved (paper §3.1: a question none of whose
# rollouts is right gets an SFT loss on its trace), because the 6-step base model's rollouts earn no
# reward, so plain GRPO would never change a weight and the comparison with the uninterrupted run
# would prove nothing. Both arms start from the same base model, built once (``train_inputs``).
TRAIN_STUDY = tiny_study(
    "preemption",
    sft={"epochs": 3, "batch_size": 4, "micro_batch_size": 4, "save_every_steps": 1},
    grpo={"learning_rate": 1.0e-4, "steps": GRPO_STEPS, "prompts_per_step": 2, "mini_batch_size": 2,
          "num_generations": 4, "micro_batch_size": 8, "max_new_tokens": 16, "temperature": 1.0, "save_every_steps": 1,
          "hybrid": "interleaved"},
    arms=[{"name": "base", "kind": "base"}, {"name": SFT_ARM, "kind": "sft", "train_set": "pretrain"},
          {"name": GRPO_ARM, "kind": "grpo", "train_set": "pretrain"}],
    resources={"default": {"mem_mb": 2000, "runtime": 15}, "train_sft": {"gpus": 1, "cpus_per_gpu": 1}},
)


def snakemake_cmd(wd: Path, config: Path, *args: str) -> list[str]:
    """A study config merged over config/config.yaml, run in ``wd`` (tests/tiny_study.py)."""
    return study_cmd(wd, *args, configs=[config])


def slurm_cmd(wd: Path, config: Path, *args: str) -> list[str]:
    # --retries 0: the cancelled job fails this run instead of being resubmitted by it
    return snakemake_cmd(wd, config, "--profile", str(ROOT / "profiles/slurm-local"), "--retries", "0", *args)


_INPUTS: dict[str, tuple[Path, Path]] = {}


def train_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """``(root, config)``: TRAIN_STUDY's config and its arms' inputs (data, base model) in ``root/inputs``, built
    locally once per session (only training jobs go through Slurm); tests copy them (``copy_inputs``)."""
    if "inputs" not in _INPUTS:
        require_cluster()
        root = tmp_path_factory.mktemp("train-on-slurm")
        config = root / "study.yaml"
        config.write_text(yaml.safe_dump(TRAIN_STUDY))
        t0 = time.monotonic()
        prep = subprocess.run(snakemake_cmd(root / "inputs", config, "--cores", "2", "results/preemption/models/base",
                                            "results/preemption/data/train/pretrain.parquet"),
                              capture_output=True, text=True, env=job_env(), timeout=600)
        assert prep.returncode == 0, prep.stderr[-5000:]
        print(f"\nSlurm training tests' inputs (data, base model, locally): {time.monotonic() - t0:.1f} s",
              file=sys.stderr)
        _INPUTS["inputs"] = (root, config)
    return _INPUTS["inputs"]


def copy_inputs(inputs: tuple[Path, Path], *names: str) -> list[Path]:
    """Fresh study folders ``root/<name>`` holding copies of the inputs."""
    root, _ = inputs
    for name in names:
        shutil.copytree(root / "inputs", root / name, symlinks=True)
    return [root / name for name in names]
