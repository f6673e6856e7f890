"""Faults of a cluster run on the real Slurm test cluster (docs/slurm.md, docs/reliability.md): a node
that fails in the middle of a GRPO job, and two Snakemake runs started on the same folder.

* The running GRPO job is requeued with ``scontrol requeue``, then its node is set DOWN (Slurm requeues it
  again, NODE_FAIL); each time the job starts over on the node and resumes from its last state, and the
  same Snakemake run ends with the model of an uninterrupted run (same steps, weights within 1e-5).
* While it runs, a second Snakemake started on the same folder stops with Snakemake's lock message and
  submits nothing.

The study and its inputs (data, base model) are those of the preemption test (tests/slurmci.py:
TRAIN_STUDY, built once per session). CI (``.ci/run``) sets SYNERGY_SLURM_CI=1: these tests then fail,
not skip, without the cluster.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from slurmci import (GRPO_ARM, GRPO_STEPS, copy_inputs, job_env, sacct_jobs, slurm_cmd, snakemake_cmd,
                     train_inputs)

pytestmark = pytest.mark.slow

GRPO_MODEL = f"results/preemption/models/{GRPO_ARM}"
GRPO_STATE = f"results/preemption/train_state/{GRPO_ARM}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return train_inputs(tmp_path_factory)


NODE_DOWN_REASON = "synergy-ci-node-failure"


def _job(wd: Path, rule: str) -> tuple[str, str] | None:
    """(Slurm id, state) of the ``rule`` job of ``wd`` in squeue (any state), or None."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k|%Z"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        jid, state, comment, workdir = line.split("|", 3)
        if comment.startswith(f"rule_{rule}") and Path(workdir).resolve() == wd.resolve():
            return jid, state
    return None


def _wait(what: str, check, proc: subprocess.Popen, timeout: float = 300):
    """Poll ``check()`` until it returns something truthy; fail if ``proc`` (the Slurm run, whose output goes to
    the file ``proc.log``) ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the Slurm run ended while waiting for {what}: {Path(proc.log).read_text()[-4000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _steps(wd: Path) -> list[int]:
    state = wd / GRPO_STATE
    return sorted(int(p.name.split("-")[1]) for p in state.glob("step-*")) if state.is_dir() else []


def _gone(jid: str) -> bool:
    """No process of job ``jid`` is left on the node, which is this machine: neither one slurmd knows of
    (``scontrol listpids``) nor a ``slurmstepd`` of its steps, which after a node failure outlives slurmd's
    record by a few seconds (its final message to slurmd is refused)."""
    out = subprocess.run(["scontrol", "listpids", jid], capture_output=True, text=True)
    if re.search(rf"^\d+\s+{jid}\s", out.stdout, re.M):
        return False
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(f"slurmstepd: [{jid}.".encode()):
                return False
        except OSError:
            continue  # the process ended while we looked
    return True


def _release(jid: str, proc: subprocess.Popen) -> None:
    """A requeued job waits ~2 minutes (BeginTime) before Slurm starts it again; start it now, once the processes
    of its killed run are gone (started while they linger, Slurm refuses the launch and holds the job)."""
    _wait(f"the processes of job {jid} to end", lambda: _gone(jid), proc, timeout=60)
    time.sleep(1.0)
    subprocess.run(["scontrol", "update", f"jobid={jid}", "starttime=now"], capture_output=True, text=True)


def _resumes(wd: Path) -> list[int]:
    log = wd / f"logs/preemption/train_grpo/{GRPO_ARM}.log"
    return [int(s) for s in re.findall(r"resumed from \S+step-\d+ \(step (\d+)\)", log.read_text())] \
        if log.is_file() else []


@pytest.fixture(scope="module")
def node_failures(inputs):
    root, config = inputs
    foreign = [ln for ln in subprocess.run(["squeue", "-h", "-t", "PD,R,CG,CF,S", "-o", "%i %Z"], capture_output=True,
                                           text=True).stdout.splitlines() if str(root) not in ln]
    assert not foreign, f"jobs of others on the test cluster; setting its node DOWN would kill them: {foreign}"
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    c, d = copy_inputs(inputs, "c", "d")  # d: the same inputs, trained uninterrupted (locally) for reference
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    t0 = time.monotonic()
    # output to files, not pipes: minutes of Snakemake output must not fill a pipe and block it
    ref_log, first_log = root / "nodefail-reference.log", root / "nodefail-run.log"
    with open(ref_log, "w") as out:
        ref = subprocess.Popen(snakemake_cmd(d, config, "--cores", "1", GRPO_MODEL), stdout=out, stderr=subprocess.STDOUT,
                               env=job_env())
    with open(first_log, "w") as out:
        first = subprocess.Popen(slurm_cmd(c, config, GRPO_MODEL), stdout=out, stderr=subprocess.STDOUT, env=job_env())
    first.log = first_log
    ev: dict = {}
    try:
        # 1. scontrol requeue once the state of step 3 is on disk
        jid = _wait("the GRPO job to save step 3", lambda: (j := _job(c, "train_grpo")) and j[1] == "RUNNING"
                    and _steps(c) and _steps(c)[-1] >= 3 and j[0], first)
        ev["job"], ev["steps_at_requeue"] = jid, _steps(c)
        assert subprocess.run(["scontrol", "requeue", jid], capture_output=True, text=True).returncode == 0
        _wait("the requeued job to pend", lambda: (j := _job(c, "train_grpo")) and j[1] == "PENDING", first)
        # 2. meanwhile a second Snakemake on the same folder: Snakemake's lock stops it before anything runs
        second = subprocess.run(slurm_cmd(c, config, GRPO_MODEL), capture_output=True, text=True, env=job_env(),
                                timeout=300)
        ev["second"] = second
        _release(jid, first)
        # 3. the job runs again and resumes; once it has saved 2 more steps, its node goes DOWN
        _wait("the requeued job to resume and save 2 more steps",
              lambda: _resumes(c) and _steps(c) and _steps(c)[-1] >= _resumes(c)[-1] + 2, first)
        ev["first_resume"], ev["steps_at_node_down"] = _resumes(c)[-1], _steps(c)
        down = subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", f"reason={NODE_DOWN_REASON}"],
                              capture_output=True, text=True)
        assert down.returncode == 0, down.stderr
        _wait("the job to be requeued after the node failure",
              lambda: (j := _job(c, "train_grpo")) and j[1] == "PENDING", first)
        _wait(f"the processes of job {jid} to end", lambda: _gone(jid), first, timeout=60)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True, text=True)
        _release(jid, first)
        deadline = time.monotonic() + 600
        while first.poll() is None and time.monotonic() < deadline:  # fail fast if Slurm held the job
            reason = subprocess.run(["squeue", "-h", "-j", jid, "-o", "%r"], capture_output=True, text=True).stdout
            assert "held" not in reason, f"Slurm held job {jid}: {reason.strip()} (see slurmctld.log)"
            time.sleep(1.0)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            if ev.get("job"):
                subprocess.run(["scancel", ev["job"]], capture_output=True, text=True)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True, text=True)
    first_err = first_log.read_text()
    ev["second_resume"] = _resumes(c)[-1] if _resumes(c) else None
    assert ref.wait(timeout=600) == 0, ref_log.read_text()[-4000:]
    print(f"\nnode-failure test: {time.monotonic() - t0:.1f} s (steps at requeue {ev['steps_at_requeue']}, "
          f"resumed at {ev['first_resume']}, node down at {ev['steps_at_node_down']}, resumed at {ev['second_resume']})")
    return {"c": c, "d": d, "started": started, "first_rc": first.returncode, "first_err": first_err, **ev}


def test_requeued_and_node_failed_job_resumes_and_ends_as_an_uninterrupted_run(node_failures):
    nf = node_failures
    assert nf["first_rc"] == 0, nf["first_err"][-5000:]  # the same Snakemake run saw the job through both faults
    # each restart resumed from the newest state on disk when the job was stopped (or one saved after it)
    assert nf["first_resume"] >= nf["steps_at_requeue"][-1] >= 3
    assert nf["second_resume"] >= nf["steps_at_node_down"][-1] >= nf["first_resume"] + 2
    assert nf["second_resume"] < GRPO_STEPS
    from safetensors.torch import load_file

    wc, wd = (load_file(w / GRPO_MODEL / "model.safetensors") for w in (nf["c"], nf["d"]))
    assert wc.keys() == wd.keys()
    assert max(float((wc[k] - wd[k]).abs().max()) for k in wc) < 1e-5
    base = load_file(nf["c"] / "results/preemption/models/base/model.safetensors")
    assert max(float((wc[k] - base[k]).abs().max()) for k in base) > 1e-3  # training moved the weights
    lc, ld = (pl.read_parquet(w / f"results/preemption/train_logs/{GRPO_ARM}.parquet") for w in (nf["c"], nf["d"]))
    assert lc["step"].to_list() == ld["step"].to_list() == list(range(1, GRPO_STEPS + 1))
    for col in ("reward", "entropy", "response_length", "grad_norm"):
        assert lc[col].to_list() == pytest.approx(ld[col].to_list(), abs=1e-4, nan_ok=True), col
    assert not (nf["c"] / GRPO_STATE).exists()


def test_sacct_shows_one_job_requeued_then_node_failed_then_completed(node_failures):
    nf = node_failures
    out = subprocess.run(["sacct", "-X", "-D", "-n", "-P", "-j", nf["job"], "-o", "JobIDRaw,State,Comment"],
                         capture_output=True, text=True)
    states = [line.split("|")[1].split()[0] for line in out.stdout.splitlines() if line.strip()]
    assert states == ["REQUEUED", "NODE_FAIL", "COMPLETED"], out.stdout
    train = [j for j in sacct_jobs(nf["c"], nf["started"]) if j["Comment"].startswith("rule_train_grpo")]
    assert [j["JobIDRaw"] for j in train] == [nf["job"]]  # one Slurm job (restarted twice), never resubmitted


def test_a_second_snakemake_on_the_same_folder_stops_at_the_lock_and_submits_nothing(node_failures):
    nf = node_failures
    second = nf["second"]
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stderr, second.stderr[-3000:]
    assert "--unlock" in second.stderr
    run_ids = set(re.findall(r"SLURM run ID: (\S+)", second.stdout + second.stderr))
    names = {j["JobName"] for j in sacct_jobs(nf["c"], nf["started"])}
    assert len(names) == 1 and not run_ids & names  # every job of the folder is the first run's
    assert "Submitted job" not in second.stdout + second.stderr
