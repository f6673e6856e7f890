"""Reliability of the workflow as a user runs it (docs/reliability.md): determinism across two
fresh runs, a training rule killed with SIGKILL at a random moment, the recovery, and no secret in a log.

One module fixture runs a very small study (written below; smaller than config/smoke.yaml) with the
real Snakemake CLI in two fresh directories:

* run B: difficulty levels, the base model's evaluation and one SFT arm, uninterrupted;
* run A, at the same time as B: levels and evaluation (compared byte for byte with B); then the SFT
  arm, killed (SIGKILL to Snakemake and every job process) once the state of a random step is on
  disk and after a random delay, then recovered with ``--unlock`` and a rerun with
  ``--rerun-incomplete``; the resumed arm is compared with B's.

Every run has a fake hub token in its environment (HF_TOKEN, HUGGING_FACE_HUB_TOKEN); no log may show it.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from tiny_study import tiny_study

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TOKEN = "hf_reliabilityFAKE0123456789abcdef"
BENCH = "synth-mixed"
ARM = "sft-short"
LEVELS = "results/reliability/difficulty/levels.parquet"
EVAL = f"results/reliability/eval/base/{BENCH}.parquet"
MODEL = f"results/reliability/models/{ARM}"
TRAIN_LOG = f"results/reliability/train_logs/{ARM}.parquet"
STATE = f"results/reliability/train_state/{ARM}"

# A study small enough for two fresh runs in about a minute each on 2 cores (merged over config/config.yaml).
TINY_STUDY = tiny_study(
    "reliability", bench=BENCH,
    # 61 training rows (3 held out) in batches of 4: 16 steps per epoch, 32 steps, a full state after every step
    sft={"epochs": 2, "batch_size": 4, "micro_batch_size": 4, "save_every_steps": 1},
    arms=[{"name": "base", "kind": "base"}, {"name": ARM, "kind": "sft", "train_set": "pretrain"}],
)

pytestmark = pytest.mark.slow


def _env() -> dict:
    return {**os.environ, "HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN, "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def _cmd(wd: Path, config: Path, *targets: str, extra: tuple = ()) -> list[str]:
    # targets before --configfile (it takes several values)
    return [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", "--rerun-incomplete", *extra,
            *targets, "--configfile", str(ROOT / "config/config.yaml"), str(config)]


def _snakemake(wd: Path, config: Path, *targets: str, extra: tuple = ()) -> subprocess.CompletedProcess:
    out = subprocess.run(_cmd(wd, config, *targets, extra=extra), capture_output=True, text=True, env=_env(),
                         timeout=900)
    assert out.returncode == 0, out.stderr[-6000:]
    return out


def _together(*runs: tuple) -> None:
    """Run several Snakemake invocations at the same time, each in its own directory; all must succeed."""
    procs = [subprocess.Popen(_cmd(*r), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for r in runs]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-6000:]


def _visible_files(wd: Path) -> set[str]:
    """Files under results/ that a user (or a glob) would take for outputs: no hidden temporary names."""
    out = set()
    for p in (wd / "results").rglob("*"):
        rel = p.relative_to(wd)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.add(str(rel))
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state_steps(state: Path) -> list[int]:
    if not state.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in state.glob("step-*") if (p / "trainer_state.json").is_file())


def _kill_at_random_step(wd: Path, config: Path, rng: random.Random) -> dict:
    """Start the arm's training, SIGKILL Snakemake and its jobs once step k's state exists plus a random delay.

    A step with its full state save takes about 0.1 s here, so k stays in the first 12 of 32 steps and the delay
    under 0.3 s: at least 20 steps remain when the kill lands, even on a machine several times faster (a kill at
    k = 24 plus 0.5 s once arrived after the training had finished and removed its state)."""
    k, delay = rng.randint(2, 12), rng.uniform(0.0, 0.3)
    proc = subprocess.Popen(_cmd(wd, config, MODEL), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            steps = _state_steps(wd / STATE)
            if steps and steps[-1] >= k:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-3000:]}"
        time.sleep(delay)
        seen = _state_steps(wd / STATE)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    time.sleep(1.0)  # let the killed processes' file handles go
    return {"k": k, "delay": delay, "seen_before_kill": seen}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(TINY_STUDY))
    a, b = root / "a", root / "b"
    t0 = time.monotonic()
    _together((b, config, LEVELS, EVAL, MODEL), (a, config, LEVELS, EVAL))
    t2 = time.monotonic()
    seed = int.from_bytes(os.urandom(4), "little")
    before_kill = _visible_files(a)
    kill = _kill_at_random_step(a, config, random.Random(seed))
    after_kill = _visible_files(a)
    assert (a / STATE).is_dir(), f"the training finished before the kill landed (seed {seed}, {kill})"
    state_after_kill = {p.name: sorted(f.name for f in p.iterdir()) if p.is_dir() else None
                        for p in (a / STATE).iterdir()}
    unlock = subprocess.run(_cmd(a, config, extra=("--unlock",)), capture_output=True, text=True, env=_env())
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    t3 = time.monotonic()
    rerun = _snakemake(a, config, MODEL)
    print(f"runs A and B {t2 - t0:.1f} s, kill {t3 - t2:.1f} s, rerun {time.monotonic() - t3:.1f} s")
    return {"a": a, "b": b, "config": config, "seed": seed, "kill": kill, "before_kill": before_kill,
            "after_kill": after_kill, "state_after_kill": state_after_kill, "rerun": rerun,
            "seconds": time.monotonic() - t0}


def test_two_fresh_runs_give_byte_identical_levels_and_evaluation(runs):
    a, b = runs["a"], runs["b"]
    assert _digest(a / LEVELS) == _digest(b / LEVELS)
    assert _digest(a / EVAL) == _digest(b / EVAL)
    ea, eb = pl.read_parquet(a / EVAL), pl.read_parquet(b / EVAL)
    assert ea["correct"].mean() == eb["correct"].mean() and ea.height == 8 * 2
    # every intermediate too: questions, training sets, samples, the pretrained base model's weights
    shared = [p for p in (b / "results").rglob("*") if p.is_file() and (a / p.relative_to(b)).is_file()
              and p.suffix in (".parquet", ".safetensors") and "train_logs" not in p.parts and ARM not in p.parts]
    assert len(shared) >= 5
    different = [str(p.relative_to(b)) for p in shared if _digest(p) != _digest(a / p.relative_to(b))]
    assert not different


def test_kill_leaves_no_output_that_looks_complete(runs):
    kill = runs["kill"]
    info = f"(seed {runs['seed']}: killed {kill['delay']:.2f} s after the state of step {kill['k']})"
    new = runs["after_kill"] - runs["before_kill"]
    assert new and all(p.startswith(STATE + "/") for p in new), (sorted(new), info)
    assert MODEL not in {str(Path(p).parent) for p in runs["after_kill"]} and TRAIN_LOG not in runs["after_kill"]
    # every state that is visible is complete (a half-written one is still under its hidden .tmp- name)
    for name, files in runs["state_after_kill"].items():
        if name.startswith("step-"):
            assert {"trainer_state.json", "scheduler.json", "model.safetensors", "optimizer.bin"} <= set(files), info
        else:
            # a kill while the train log so far was being replaced leaves atomic_path's hidden temporary file
            hidden_tmp = re.fullmatch(r"\.train_log\.parquet\.\w+\.tmp", name) is not None
            assert name.startswith(".tmp-step-") or name.startswith("epoch-") or name == "train_log.parquet" \
                or hidden_tmp, (name, info)


def test_rerun_resumes_from_the_last_saved_state_and_matches_the_uninterrupted_run(runs):
    a, b, kill = runs["a"], runs["b"], runs["kill"]
    log = (a / f"logs/reliability/train_sft/{ARM}.log").read_text()
    m = re.search(r"resumed from \S+step-(\d+) \(step (\d+)\)", log)
    assert m, log[-3000:]
    resumed = int(m.group(2))
    assert resumed >= max(kill["seen_before_kill"]) >= kill["k"] >= 2, kill  # the newest state on disk at the kill
    from safetensors.torch import load_file

    wa, wb = load_file(a / MODEL / "model.safetensors"), load_file(b / MODEL / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    la, lb = pl.read_parquet(a / TRAIN_LOG), pl.read_parquet(b / TRAIN_LOG)
    assert la["step"].to_list() == lb["step"].to_list() and la.height == 32 + 2
    assert la["loss"].to_list() == pytest.approx(lb["loss"].to_list(), abs=1e-5, nan_ok=True)
    assert not (a / STATE).exists()  # removed once the model is written
    dry = _snakemake(a, runs["config"], LEVELS, EVAL, MODEL, extra=("-n",))
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_no_log_shows_the_hub_token(runs):
    files = [p for wd in (runs["a"], runs["b"]) for sub in ("logs", ".snakemake/log", "results/reliability/benchmarks")
             for p in (wd / sub).rglob("*") if p.is_file()]
    assert len(files) >= 10
    assert not [str(p) for p in files if TOKEN in p.read_text(errors="replace")]
    assert TOKEN not in runs["rerun"].stdout + runs["rerun"].stderr
    # the jobs loaded their models with trust_remote_code from the config (off)
    assert "trust_remote_code=False" in (runs["a"] / "logs/reliability/evaluate/base.log").read_text()


def _older(wd: Path, order: list[Path]) -> None:
    """Give the files of ``order`` modification times a day ago, one second apart in that order."""
    t = time.time() - 86400
    for k, p in enumerate(order):
        os.utime(p, (t + k, t + k))


def test_results_restored_with_older_times_rerun_until_touched(runs, tmp_path):
    """A backup restored with older times (docs/reliability.md, "Results restored from a backup"): Snakemake reruns
    every job whose output is older than an input or its script, and everything after it; ``--touch`` marks the
    restored outputs up to date without rewriting them."""
    import shutil

    c = tmp_path / "c"
    shutil.copytree(runs["b"], c, symlinks=True)  # B is complete for these targets
    targets = (LEVELS, EVAL, MODEL)
    files = sorted(p for p in (c / "results").rglob("*") if p.is_file())
    before = {p: _digest(p) for p in files}
    _older(c, files[::-1])                        # restored in an arbitrary order (here: reverse path order)
    dry = _snakemake(c, runs["config"], *targets, extra=("-n",))
    reasons = set(re.findall(r"reason: ([^:\n]+)", dry.stdout + dry.stderr))
    assert "Nothing to be done" not in dry.stdout + dry.stderr
    assert {"Code has changed since last execution", "Input files updated by another job"} & reasons, reasons
    _snakemake(c, runs["config"], *targets, extra=("--touch",))
    dry = _snakemake(c, runs["config"], *targets, extra=("-n",))
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert {p: _digest(p) for p in files} == before  # nothing was recomputed or rewritten
