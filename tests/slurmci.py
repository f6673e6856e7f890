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
        cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--profile", str(ROOT / profile),
               "--configfile", str(ROOT / "config/smoke.yaml")]
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


SACCT_FIELDS = ["JobIDRaw", "JobName", "State", "Partition", "Account", "AllocTRES", "WorkDir", "Comment"]


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
