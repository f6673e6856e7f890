"""Faults injected into training and output writing (docs/reliability.md), and the recovery paths.

Each test injects one fault into a real run on the tiny test model and checks the message the user
gets and that the rerun recovers: an infinite loss, out of memory (GPU and host), a grader-timeout
storm, SIGKILL in the middle of writing a parquet file and a model folder, and re-grading timed-out
samples without generating them again. (A NaN loss and a kill between steps are covered by
tests/test_sft_trainer.py and tests/test_grpo.py; a SIGKILL of a whole Snakemake run by
tests/test_reliability_workflow.py.)
"""
from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch

from synergy.config import GRPOSettings, SFTSettings
from synergy.data.suite import build_benchmark, build_train_set
from synergy.grading import Grader
from synergy.io import read_rows, write_parquet
from synergy.regrade import questions_path, regrade_file
from synergy.train import grpo as grpo_mod
from synergy.train import sft_trainer
from synergy.train.core import GradingStorm, TrainingDiverged, TrainingOutOfMemory, check_finite
from synergy.train.grpo import METRIC_COLUMNS, train_grpo
from synergy.train.sft_trainer import train_sft

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sft_rows():
    return build_train_set("sft", 8, {"count_all": 1.0}, style="short", modality="image", seed=0, image_size=56,
                           max_objects=4, exclude=set(), reasoning_share=1.0)


def _sft(tiny_model_dir, rows, root: Path, **kw):
    # 6 training rows (2 held out) in batches of 2: 3 steps per epoch, 6 steps, a state every 2 steps
    cfg = SFTSettings(**{**dict(learning_rate=1e-3, batch_size=2, micro_batch_size=2, epochs=2, warmup_ratio=0.0,
                                val_fraction=0.25, select="last", save_every_steps=2, max_length=512), **kw})
    return train_sft(tiny_model_dir, rows, root / "sft-arm", log_path=root / "log.parquet", state_dir=root / "state",
                     cfg=cfg)


def _fail_at_training_forward(monkeypatch, n: int, make_error):
    """From the n-th training forward of the SFT loss on, ``make_error(loss)`` replaces the loss or raises."""
    real, calls = sft_trainer.sft_loss, {"n": 0}

    def faulty(model, batch):
        mean, tokens = real(model, batch)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] >= n:
                return make_error(mean), tokens
        return mean, tokens

    monkeypatch.setattr(sft_trainer, "sft_loss", faulty)


# --------------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_stops_on_nan_and_inf(value, tmp_path):
    with pytest.raises(TrainingDiverged, match=rf"loss became {value} at step 7; training stopped, no state"):
        check_finite(torch.tensor([1.0, value]).sum(), 7, None)
    check_finite(torch.tensor(3.0), 7, None)  # finite: no error


def test_infinite_loss_stops_and_the_rerun_resumes_from_the_last_good_state(tiny_model_dir, sft_rows, tmp_path,
                                                                            monkeypatch, caplog):
    with monkeypatch.context() as m:
        _fail_at_training_forward(m, 3, lambda loss: loss + float("inf"))  # step 3 of 6
        with pytest.raises(TrainingDiverged, match=r"loss became inf at step 3.*step-000002 \(step 2\).*rerun"):
            _sft(tiny_model_dir, sft_rows, tmp_path)
    assert not (tmp_path / "sft-arm").exists() and not (tmp_path / "log.parquet").exists()
    caplog.set_level(logging.INFO, logger="synergy.train")
    summary = _sft(tiny_model_dir, sft_rows, tmp_path)  # the cause is gone (here: the injected fault)
    assert "step-000002 (step 2)" in caplog.text and summary["steps"] == 6
    log = pl.read_parquet(tmp_path / "log.parquet")
    assert all(math.isfinite(v) for v in log["loss"].drop_nulls().to_list())


# ------------------------------------------------------------------------------ out of memory


def test_out_of_memory_names_arm_sizes_and_state_and_a_retry_resumes(tiny_model_dir, sft_rows, tmp_path, monkeypatch,
                                                                      caplog):
    def oom(loss):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")

    with monkeypatch.context() as m:
        _fail_at_training_forward(m, 5, oom)  # step 5 of 6: the last state is step 4
        with pytest.raises(TrainingOutOfMemory) as err:
            _sft(tiny_model_dir, sft_rows, tmp_path)
    msg = str(err.value)
    assert "arm 'sft-arm' ran out of GPU memory (OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in msg
    assert "batch_size=2, micro_batch_size=2, max_length=512" in msg
    assert f"a rerun resumes from {tmp_path / 'state' / 'step-000004'} (step 4)" in msg
    assert "--retries" in msg and "mem_mb" in msg and isinstance(err.value, MemoryError)
    # the retry (more memory, or a smaller micro-batch: memory only, not part of the resume fingerprint) resumes
    caplog.set_level(logging.INFO, logger="synergy.train")
    summary = _sft(tiny_model_dir, sft_rows, tmp_path, micro_batch_size=1)
    assert "step-000004 (step 4)" in caplog.text and summary["steps"] == 6 and (tmp_path / "sft-arm").is_dir()


@pytest.fixture(scope="module")
def grpo_rows():
    return build_train_set("rl", 8, {"exists": 1.0}, style="none", modality="image", seed=0, image_size=56,
                           max_objects=4, exclude=set())


def _grpo(model_dir, rows, root: Path, cfg: GRPOSettings, **kw):
    return train_grpo(model_dir, rows, root / "rl-arm", log_path=root / "rl.parquet", state_dir=root / "rl-state",
                      cfg=cfg, **kw)


GRPO = dict(learning_rate=1e-3, steps=3, prompts_per_step=1, mini_batch_size=1, num_generations=2,
            micro_batch_size=2, max_new_tokens=4, kl_coef=0.0, save_every_steps=1, reasoning_instruction=False)


def test_host_out_of_memory_in_grpo_names_arm_sizes_and_state(tiny_model_dir, grpo_rows, tmp_path, monkeypatch):
    real, calls = grpo_mod.update.grpo_loss, {"n": 0}  # the module of the updates (synergy/train/grpo/update.py)

    def faulty(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # one loss per step here: step 2 fails
            raise MemoryError()
        return real(*args, **kwargs)

    monkeypatch.setattr(grpo_mod.update, "grpo_loss", faulty)
    with pytest.raises(TrainingOutOfMemory, match=r"arm 'rl-arm' ran out of host memory \(MemoryError\) with "
                       r"prompts_per_step=1, mini_batch_size=1, num_generations=2, micro_batch_size=2, "
                       r"max_new_tokens=4; a rerun resumes from \S+step-000001 \(step 1\)"):
        _grpo(tiny_model_dir, grpo_rows, tmp_path, GRPOSettings(**GRPO))
    assert not (tmp_path / "rl-arm").exists() and not (tmp_path / "rl.parquet").exists()


# ------------------------------------------------------------------------------ grader storm


@pytest.fixture(scope="module")
def expression_rows(grpo_rows):
    """Questions whose answers go to the math-verify worker (expression type), so grading can time out."""
    return [{**r, "answer": "x^2+1", "answer_type": "expression", "options": []} for r in grpo_rows]


def test_grader_timeout_storm_stops_grpo_with_a_clear_message(tiny_model_dir, expression_rows, tmp_path):
    cfg = GRPOSettings(**{**GRPO, "steps": 2})
    with pytest.raises(GradingStorm, match=r"arm 'rl-arm', step 1: 2 of 2 rollouts could not be graded \(2 timeouts; "
                       r"share 1.00 > grading.max_failure_share 0.5\); training stopped before the update; no "
                       r"training state was saved yet.*Raise grading.timeout_s"):
        _grpo(tiny_model_dir, expression_rows, tmp_path, cfg, grading_timeout_s=0.01)
    assert not (tmp_path / "rl-arm").exists()


def test_grader_timeouts_below_the_share_are_counted_and_training_continues(tiny_model_dir, expression_rows, tmp_path,
                                                                             caplog):
    caplog.set_level(logging.WARNING, logger="synergy.train")
    cfg = GRPOSettings(**{**GRPO, "steps": 1})
    summary = _grpo(tiny_model_dir, expression_rows, tmp_path, cfg, grading_timeout_s=0.01,
                    grading_max_failure_share=1.0)
    log = pl.read_parquet(tmp_path / "rl.parquet")
    assert log.columns == list(METRIC_COLUMNS) and log["grader_timeouts"].to_list() == [2]
    assert summary["grader"]["timeouts"] == 2 and summary["completed"]
    assert "step 1: 2 of 2 rollouts could not be graded (2 timeouts); they count as wrong" in caplog.text
    assert log["accuracy"].to_list() == [0.0]


# ------------------------------------------------------------------------- SIGKILL while writing

_KILLED_WRITER = textwrap.dedent('''
    import sys, time
    import pyarrow as pa
    import synergy.io as sio

    def half_then_hang(table, where, **kw):  # the process dies in the middle of the write
        with open(where, "wb") as f:
            f.write(b"PAR1" + b"\\0" * 4096)
            f.flush()
        print("writing", flush=True)
        time.sleep(120)

    sio.pq.write_table = half_then_hang
    sio.write_parquet(pa.table({"a": [1, 2]}), sys.argv[1])
''')

_KILLED_SAVER = textwrap.dedent('''
    import sys, time
    from synergy.models import load_model, save_model

    model, processor = load_model(sys.argv[1])
    real = model.save_pretrained

    def then_hang(path, **kw):  # weights written, processor files not yet: the process dies here
        real(path, **kw)
        print("writing", flush=True)
        time.sleep(120)

    model.save_pretrained = then_hang
    save_model(model, processor, sys.argv[2])
''')


def _run_and_kill(code: str, *args: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:  # libraries may print first
            if line.strip() == "writing":
                proc.kill()  # SIGKILL
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -9, proc.stderr.read()[-3000:]


def test_sigkill_while_writing_a_parquet_file_leaves_no_file(tmp_path):
    target = tmp_path / "results" / "eval" / "arm" / "b.parquet"
    _run_and_kill(_KILLED_WRITER, str(target))
    assert not target.exists()
    leftovers = list(target.parent.iterdir())
    assert leftovers and all(p.name.startswith(".b.parquet.") and p.name.endswith(".tmp") for p in leftovers)
    assert not list(target.parent.glob("*.parquet"))  # no glob of outputs sees the half-written file
    write_parquet(pl.DataFrame({"a": [1, 2]}).to_arrow(), target)  # the rerun writes it whole
    assert read_rows(target) == [{"a": 1}, {"a": 2}]


def test_sigkill_while_replacing_a_model_folder_keeps_the_old_one_whole(tiny_model_dir, tmp_path):
    import shutil

    out = tmp_path / "results" / "models" / "arm"
    shutil.copytree(tiny_model_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _run_and_kill(_KILLED_SAVER, str(tiny_model_dir), str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched, complete
    hidden = [p.name for p in out.parent.iterdir() if p.name != "arm"]
    assert hidden and all(n.startswith(".arm.tmp-") for n in hidden)


# ----------------------------------------------------------------------- re-grade, no re-generation


def test_questions_path_follows_the_path_schema():
    assert questions_path("results/eval/rl/synth-count.parquet") == Path("results/data/bench/synth-count.parquet")
    assert questions_path("/x/results/difficulty/synth-count.samples.parquet") == \
        Path("/x/results/data/bench/synth-count.parquet")
    assert questions_path("results/difficulty/train/rl.samples.parquet") == Path("results/data/train/rl.parquet")
    assert questions_path("results/difficulty/train/s1.1-r1/c76d7320.samples.parquet") == \
        Path("results/data/train/s1.1-r1.parquet")
    with pytest.raises(ValueError, match="not a samples file of the path schema"):
        questions_path("results/tables/level_accuracy.csv")


def test_regrade_fixes_timed_out_samples_in_place_without_generating(tmp_path, caplog):
    bench = build_benchmark("b", 3, {"count_all": 1.0}, seed=1, image_size=56, max_objects=4)
    write_parquet(__import__("synergy.data.schema", fromlist=["to_table"]).to_table(bench),
                  tmp_path / "results/data/bench/b.parquet")
    responses = [rf"<think> I count. </think> \boxed{{{r['answer']}}}" for r in bench]
    samples = pl.DataFrame({
        "bench": ["b"] * 3, "id": [r["id"] for r in bench], "sample": [0, 0, 0], "response": responses,
        "extracted": [None, None, bench[2]["answer"]], "correct": [False, False, True],
        "format_ok": [True, True, True], "status": ["timeout", "error", "ok"], "arm": ["rl"] * 3,
    }, schema_overrides={"sample": pl.Int32})
    path = tmp_path / "results/eval/rl/b.parquet"
    write_parquet(samples.to_arrow(), path)
    with Grader(timeout_s=10.0) as grader:
        dry = regrade_file(path, grader, only_failed=True, dry_run=True)
        assert dry["changed"] == 2 and not dry["written"] and pl.read_parquet(path).equals(samples)
        rep = regrade_file(path, grader, only_failed=True)
    assert rep["regraded"] == 2 and rep["changed"] == 2 and rep["written"]
    assert rep["status_before"] == {"timeout": 1, "error": 1, "ok": 1} and rep["status_after"] == {"ok": 3}
    after = pl.read_parquet(path)
    assert after["correct"].to_list() == [True, True, True] and after["status"].to_list() == ["ok"] * 3
    assert after.columns == samples.columns and after.schema == samples.schema
    assert after["response"].to_list() == responses  # the raw text is untouched
    assert [p.name for p in path.parent.iterdir()] == ["b.parquet"]  # written atomically, no temp left


def test_regrade_script_runs_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts/regrade.py"), "--dry-run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "none under results/*/eval/" in out.stderr
