"""Slurm job arrays (``--slurm-array-jobs``) of the pinned snakemake-executor-plugin-slurm, on the real test
cluster of .ci/slurm-up.sh (docs/slurm.md "Job arrays"): why the profiles leave them off.

A four-job rule through ``profiles/slurm-local`` with ``--slurm-array-jobs`` on:

* with ``--jobs 4`` (every ready job selected at once) the plugin submits ONE ``sbatch --array=1-4`` and
  ``sacct`` shows the four tasks ``<id>_1`` .. ``<id>_4`` COMPLETED: arrays work when nothing limits the
  selection;
* with ``--jobs 2`` (fewer slots than ready jobs, as on any real run) plugin 2.8.0 drops the selected jobs
  without submitting them and the run waits forever. That test is ``xfail(strict=True)``: the day a
  plugin release fixes it, it passes, the strict xfail fails, and the profiles can turn arrays on.
"""
from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from slurmci import ROOT, SNAKEMAKE, job_env, require_cluster, sacct_jobs

pytestmark = pytest.mark.slow

TASKS = 4
HANG_S = 45  # the --jobs 2 run: long enough for a working plugin (one array, ~30 s here), then SIGINT
SNAKEFILE = f"""
rule all:
    input: expand("out/{{i}}.txt", i=range({TASKS}))

rule work:
    output: "out/{{i}}.txt"
    resources: mem_mb=200, runtime=5
    shell: "echo {{wildcards.i}} $SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID > {{output}}"
"""


def _cmd(wd: Path, jobs: int) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(wd / "Snakefile"), "-d", str(wd), "--profile",
            str(ROOT / "profiles/slurm-local"), "--jobs", str(jobs), "--slurm-array-jobs", "work", "--retries", "0"]


@pytest.fixture(scope="module")
def array_runs(tmp_path_factory):
    """Both runs at once (the hanging one submits nothing, so they do not compete for the node)."""
    require_cluster()
    runs = {}
    for jobs in (TASKS, 2):
        wd = tmp_path_factory.mktemp(f"array-jobs{jobs}")
        (wd / "Snakefile").write_text(SNAKEFILE)
        runs[jobs] = {"wd": wd}
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    t0 = time.monotonic()
    procs = {j: subprocess.Popen(_cmd(r["wd"], j), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=job_env()) for j, r in runs.items()}
    for jobs, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, t0 + HANG_S - time.monotonic()) if jobs == 2 else 300)
            runs[jobs]["timed_out"] = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # Snakemake cancels whatever it submitted and exits
            out, err = proc.communicate(timeout=60)
            runs[jobs]["timed_out"] = True
        runs[jobs].update(rc=proc.returncode, stderr=err, seconds=time.monotonic() - t0)
    for r in runs.values():
        r["sacct"] = sacct_jobs(r["wd"], started)
        r["outputs"] = sorted(p.name for p in (r["wd"] / "out").glob("*.txt")) if (r["wd"] / "out").is_dir() else []
    print(f"\narray runs: --jobs {TASKS} {runs[TASKS]['seconds']:.1f} s, --jobs 2 stopped after "
          f"{runs[2]['seconds']:.1f} s (timed out: {runs[2]['timed_out']})")
    return runs


def test_one_array_of_every_ready_job_when_the_slots_suffice(array_runs):
    run = array_runs[TASKS]
    assert run["rc"] == 0, run["stderr"][-4000:]
    assert run["outputs"] == [f"{i}.txt" for i in range(TASKS)]
    tasks = [re.fullmatch(r"(\d+)_(\d+)", j["JobID"]) for j in run["sacct"]]
    assert all(tasks), [j["JobID"] for j in run["sacct"]]          # every job is an array task
    assert len({m.group(1) for m in tasks}) == 1                   # of one array
    assert sorted(int(m.group(2)) for m in tasks) == list(range(1, TASKS + 1))
    assert {j["State"] for j in run["sacct"]} == {"COMPLETED"}
    # each task ran a different job of the rule, inside the array
    lines = [(run["wd"] / "out" / f"{i}.txt").read_text().split() for i in range(TASKS)]
    assert [int(w) for w, _, _ in lines] == list(range(TASKS))
    assert {a for _, a, _ in lines} == {tasks[0].group(1)}
    assert sorted(int(t) for _, _, t in lines) == list(range(1, TASKS + 1))


@pytest.mark.xfail(strict=True, reason="snakemake-executor-plugin-slurm 2.8.0 drops the jobs of an array rule "
                   "whose ready jobs outnumber the free --jobs slots: nothing is submitted, the run waits forever "
                   "(github.com/snakemake/snakemake-executor-plugin-slurm/issues/473; docs/slurm.md)")
def test_arrays_go_on_when_fewer_slots_than_ready_jobs(array_runs):
    run = array_runs[2]
    assert not run["timed_out"], f"no job submitted after {HANG_S} s: sacct shows {len(run['sacct'])} jobs"
    assert run["rc"] == 0 and len(run["outputs"]) == TASKS, run["stderr"][-4000:]
