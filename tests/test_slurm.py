"""The workflow on a real Slurm cluster (docs/slurm.md): the single-node test cluster
of .ci/slurm-up.sh with real sbatch, sacct and scancel, nothing mocked.

* The smoke study (config/smoke.yaml) through ``--profile profiles/slurm-local``: every non-local rule
  ran as one Slurm job per Snakemake job (counted against the DAG), all COMPLETED, with account ``ci``;
  the GPU rule (config/smoke.yaml gives ``train_sft`` one GPU) ran on partition ``gpu`` and was granted
  ``gres/gpu`` (fake GPUs: torch finds no CUDA and trains on the CPU), the others on ``cpu`` without it.
  The run is the session's one smoke run (tests/slurmci.py), whose outputs tests/test_e2e.py checks.
* Preemption: a training job cancelled mid-run with ``scancel`` and resubmitted by a second Snakemake
  run resumes from its last saved state and ends with the model of an uninterrupted run.
  Its inputs (data, base model) are built once per session (tests/slurmci.py ``train_inputs``) and
  shared with the node-failure tests of tests/test_slurm_faults.py.

CI (``.ci/run``) sets SYNERGY_SLURM_CI=1: these tests then fail, not skip, without the cluster. Elsewhere
they skip unless it is up (``sudo bash .ci/slurm-up.sh``).
"""
from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from slurmci import (SFT_ARM, copy_inputs, job_env, job_stats, local_jobs, require_cluster, rule_of, sacct_jobs,
                     slurm_cmd, smoke_run, snakemake_cmd, train_inputs)

pytestmark = pytest.mark.slow

GPU_RULES = {"train_sft"}  # config/smoke.yaml: resources.train_sft.gpus = 1


@pytest.fixture(scope="module")
def slurm_smoke(tmp_path_factory):
    require_cluster()
    run = smoke_run(tmp_path_factory)
    assert run.slurm, "the smoke run went through profiles/local although the Slurm test cluster is up"
    return run


def test_smoke_study_outputs_are_complete(slurm_smoke):
    wd = slurm_smoke.wd
    for rel in ["results/smoke/figures/all.pdf", "results/smoke/tables/level_counts.csv", "results/smoke/tables/table6_synergy.csv",
                "results/smoke/models/merge-ties-0.5/model.safetensors", "results/smoke/models/sft-eureka/model.safetensors"]:
        assert (wd / rel).is_file(), rel
    dry = subprocess.run([*slurm_smoke.cmd, "-n"], capture_output=True, text=True, env=job_env())
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stderr[-3000:]


def test_every_rule_ran_as_one_slurm_job_per_snakemake_job(slurm_smoke):
    log = slurm_smoke.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    dag = job_stats(log)                       # every job of the DAG, local ones included
    local = local_jobs(log)
    remote = dag - local
    assert set(local) <= set(dag) and all(local[r] == dag[r] for r in local), (local, dag)  # a rule is local or not
    assert {"build_base_model", "sample_difficulty", "evaluate", "train_sft", "train_grpo"} <= set(remote)
    jobs = sacct_jobs(slurm_smoke.wd, slurm_smoke.started)
    assert jobs, "sacct shows no job of the smoke run"
    assert {j["JobName"] for j in jobs} == {run_id}
    assert Counter(rule_of(j["Comment"]) for j in jobs) == remote
    assert len(jobs) == sum(remote.values()) == len({j["JobIDRaw"] for j in jobs})
    not_done = [(j["JobIDRaw"], j["Comment"], j["State"]) for j in jobs if j["State"] != "COMPLETED"]
    assert not not_done
    assert {j["Account"] for j in jobs} == {"ci"}
    print(f"\n{len(jobs)} Slurm jobs for {sum(dag.values())} Snakemake jobs ({sum(local.values())} local): "
          f"{dict(remote)}")


def test_gpu_rules_were_granted_gres_gpu_on_the_gpu_partition(slurm_smoke):
    jobs = sacct_jobs(slurm_smoke.wd, slurm_smoke.started)
    gpu = [j for j in jobs if rule_of(j["Comment"]) in GPU_RULES]
    cpu = [j for j in jobs if rule_of(j["Comment"]) not in GPU_RULES]
    assert len(gpu) == 2 and cpu  # sft-eureka and the mixing arm
    for j in gpu:
        assert "gres/gpu=1" in j["AllocTRES"].split(","), j
        assert j["Partition"] == "gpu", j
    for j in cpu:
        assert "gres/gpu" not in j["AllocTRES"], j
        assert j["Partition"] == "cpu", j


# ------------------------------------------------------------------------------------------ preemption

ARM = SFT_ARM
MODEL = f"results/preemption/models/{ARM}"
TRAIN_LOG = f"results/preemption/train_logs/{ARM}.parquet"
STATE = f"results/preemption/train_state/{ARM}"
CANCEL_AT_STEP = 3
def _state_steps(wd: Path) -> list[int]:
    state = wd / STATE
    if not state.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in state.glob("step-*") if (p / "trainer_state.json").is_file())


def _running_train_job(wd: Path) -> str | None:
    """Slurm id of the running train_sft job of ``wd`` (squeue), or None."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        jid, comment, workdir = line.split("|", 2)
        if comment.startswith("rule_train_sft") and Path(workdir).resolve() == wd.resolve():
            return jid
    return None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return train_inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def preempted(inputs):
    root, config = inputs
    a, b = copy_inputs(inputs, "a", "b")  # b: the same inputs, trained uninterrupted for reference
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    t0 = t1 = time.monotonic()
    ref = subprocess.Popen(snakemake_cmd(b, config, "--cores", "1", MODEL), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=job_env())
    first = subprocess.Popen(slurm_cmd(a, config, MODEL), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=job_env())
    job, seen = None, []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and first.poll() is None:
            job = job or _running_train_job(a)
            seen = _state_steps(a)
            if job and seen and seen[-1] >= CANCEL_AT_STEP:
                break
            time.sleep(0.05)
        assert first.poll() is None and job, \
            f"training ended before it could be cancelled (job {job}, states {seen}): {first.communicate()[1][-4000:]}"
        cancel = subprocess.run(["scancel", job], capture_output=True, text=True)
        assert cancel.returncode == 0, cancel.stderr
        t_cancel = time.monotonic()
        _, first_err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    t2 = time.monotonic()
    seen_after = _state_steps(a)
    model_after = sorted(str(p.relative_to(a)) for p in (a / MODEL).rglob("*")) if (a / MODEL).exists() else None
    log_after = (a / TRAIN_LOG).exists()
    rerun = subprocess.run(slurm_cmd(a, config, MODEL), capture_output=True, text=True, env=job_env(), timeout=600)
    t3 = time.monotonic()
    _, ref_err = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_err[-4000:]
    times = {"until_cancel_s": t_cancel - t1, "first_run_exit_s": t2 - t_cancel,
             "rerun_s": t3 - t2, "total_s": time.monotonic() - t0}
    print("\npreemption test: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    return {"a": a, "b": b, "config": config, "job": job, "seen_before_cancel": seen, "seen_after_cancel": seen_after,
            "model_after_cancel": model_after, "train_log_after_cancel": log_after,
            "first_rc": first.returncode, "first_err": first_err, "rerun": rerun, "started": started, "times": times}


def test_cancelled_job_failed_the_first_run(preempted):
    assert preempted["first_rc"] != 0
    assert "CANCELLED" in preempted["first_err"], preempted["first_err"][-4000:]
    # nothing that looks like a finished arm (the job's output folder may exist, empty of a model)
    assert not any(p.endswith("model.safetensors") for p in preempted["model_after_cancel"] or []), \
        preempted["model_after_cancel"]
    assert not preempted["train_log_after_cancel"]
    # the saved states survive the cancellation; none is newer than training could have reached
    assert preempted["seen_after_cancel"][-1] >= preempted["seen_before_cancel"][-1] >= CANCEL_AT_STEP


def test_sacct_shows_the_cancelled_job_and_the_resubmitted_one(preempted):
    rerun = preempted["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    jobs = sacct_jobs(preempted["a"], preempted["started"])
    train = [j for j in jobs if j["Comment"].startswith("rule_train_sft")]
    assert [j["JobIDRaw"] for j in train][0] == preempted["job"]
    assert [j["State"].split()[0] for j in train] == ["CANCELLED", "COMPLETED"], train
    assert all("gres/gpu=1" in j["AllocTRES"] and j["Partition"] == "gpu" for j in train), train
    assert len(jobs) == 2  # only training went through Slurm


def test_resubmitted_job_resumed_from_the_last_saved_state(preempted):
    a, b = preempted["a"], preempted["b"]
    assert preempted["rerun"].returncode == 0, preempted["rerun"].stderr[-5000:]
    log = (a / f"logs/preemption/train_sft/{ARM}.log").read_text()
    m = re.search(r"resumed from \S+step-(\d+) \(step (\d+)\)", log)
    assert m, log[-3000:]
    resumed = int(m.group(2))
    assert resumed == preempted["seen_after_cancel"][-1] >= CANCEL_AT_STEP, (resumed, preempted["seen_after_cancel"])
    assert resumed < 48
    from safetensors.torch import load_file

    wa, wb = load_file(a / MODEL / "model.safetensors"), load_file(b / MODEL / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    la, lb = pl.read_parquet(a / TRAIN_LOG), pl.read_parquet(b / TRAIN_LOG)
    assert la["step"].to_list() == lb["step"].to_list()
    assert la.filter(pl.col("step") > 0)["step"].max() == 48
    assert la["loss"].to_list() == pytest.approx(lb["loss"].to_list(), abs=1e-5, nan_ok=True)
    assert not (a / STATE).exists()  # removed once the model is written
