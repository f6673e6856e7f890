"""A full disk and a damaged training state (docs/reliability.md §3 and the fault table).

* Disk full: a training state, a parquet output and a model folder are saved, then the space is taken
  away and each is saved again (tests/diskfull_probe.py, in a subprocess): on a small tmpfs (real
  ENOSPC; needs root to mount, else skipped) and under RLIMIT_FSIZE (EFBIG, needs nothing). Each save
  stops with ``DiskFull`` naming the folder and the space needed; everything saved before is whole.
* A damaged newest state (a truncated optimiser file, a zero-byte safetensors, a flipped byte): the
  rerun warns, names the file, resumes from the previous good state and ends with the weights of an
  uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_sft_trainer import make_rows, run, settings, weights

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def small_disk(request, tmp_path):
    """A folder whose writes fail for lack of space: ``tmpfs`` (a 16 MB tmpfs) or ``rlimit`` (a plain folder)."""
    work = tmp_path / "work"
    work.mkdir()
    if request.param == "tmpfs":
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(work)], capture_output=True,
                               text=True)
        if mount.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()[:200]}); the rlimit case runs instead")
        yield request.param, work
        subprocess.run(["umount", str(work)], check=True)
    else:
        yield request.param, work


@pytest.mark.parametrize("small_disk", ["tmpfs", "rlimit"], indirect=True)
def test_disk_full_stops_each_save_naming_folder_and_space_and_keeps_the_previous_whole(small_disk, tiny_model_dir):
    mode, work = small_disk
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, str(ROOT / "tests/diskfull_probe.py"), str(tiny_model_dir), str(work), mode],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    mb = res["state_bytes"] / 2**20
    errors = res["errors"]
    assert re.match(rf"out of disk space while writing the training state of step 2 in {work}/state \(.*\)\. "
                    rf"It needs about {mb:.1f} MB; .* free there\. The previous state {work}/state/step-000001 is "
                    "whole and a rerun resumes from it\\. Free at least that much", errors["state"] or ""), errors
    assert re.match(rf"out of disk space while writing out\.parquet in {work} .*It needs about .* MB; .*"
                    r"The previous out\.parquet is whole", errors["parquet"] or ""), errors
    assert re.match(rf"out of disk space while writing the model folder model in {work} .*It needs about .* MB; "
                    rf".*The previous {work}/model is whole", errors["model"] or ""), errors
    assert res["unchanged"], "a file saved before the disk filled was changed"
    assert res["state_problem"] is None and res["latest"] == "step-000001"
    assert res["left"] == ["step-000001", "model", "out.parquet", "state"]  # no partial state, file or folder left


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """An uninterrupted run (6 steps) and one stopped after step 4 (states of steps 3 and 4 kept), copied per test."""
    root = tmp_path_factory.mktemp("disk-ref")
    summary = run(tiny_model_dir, make_rows(8), root, "ref", settings())
    assert run(tiny_model_dir, make_rows(8), root, "stopped", settings(), stop_after_steps=4)["stopped"]
    return root, summary


def _stopped_copy(runs, tmp_path: Path) -> Path:
    shutil.copytree(runs[0] / "stopped", tmp_path / "b")
    return tmp_path / "b" / "state"


def _truncate_optimizer(state: Path) -> str:
    path = state / "optimizer.bin"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    return rf"optimizer\.bin is {size // 2} bytes, {size} were written"


def _empty_safetensors(state: Path) -> str:
    path = state / "model.safetensors"
    size = path.stat().st_size
    path.write_bytes(b"")
    return rf"model\.safetensors is 0 bytes, {size} were written"


def _flip_a_byte(state: Path) -> str:
    path = state / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return r"model\.safetensors does not match its SHA-256 checksum"


@pytest.mark.parametrize("damage", [_truncate_optimizer, _empty_safetensors, _flip_a_byte],
                         ids=["truncated optimizer file", "zero-byte safetensors", "one flipped byte"])
def test_damaged_newest_state_is_detected_and_the_run_resumes_from_the_previous_good_one(
        damage, runs, tiny_model_dir, tmp_path, caplog):
    state = _stopped_copy(runs, tmp_path)
    assert sorted(p.name for p in state.glob("step-*")) == ["step-000003", "step-000004"]  # saves: 2, 3 (epoch), 4
    assert json.loads((state / "step-000004" / "checksums.json").read_text())
    problem = damage(state / "step-000004")
    caplog.set_level(logging.INFO, logger="synergy.train")
    summary = run(tiny_model_dir, make_rows(8), tmp_path, "b", settings())
    assert re.search(rf"training state {state}/step-000004 is damaged: {problem}; it is skipped and moved to "
                     rf"{state}/\.damaged-step-000004", caplog.text), caplog.text[-3000:]
    assert re.search(rf"resuming from the previous good state {state}/step-000003 \(step 3\) instead of the "
                     "damaged step-000004", caplog.text)
    assert f"resumed from {state}/step-000003 (step 3)" in caplog.text
    assert summary["steps"] == runs[1]["steps"] == 6
    wa, wb = weights(runs[0] / "ref" / "model"), weights(tmp_path / "b" / "model")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_a_state_without_checksums_is_still_resumed(runs, tiny_model_dir, tmp_path, caplog):
    """States saved before checksums existed resume as before (nothing to check them against)."""
    state = _stopped_copy(runs, tmp_path)
    (state / "step-000004" / "checksums.json").unlink()
    caplog.set_level(logging.INFO, logger="synergy.train")
    assert run(tiny_model_dir, make_rows(8), tmp_path, "b", settings())["steps"] == 6
    assert f"resumed from {state}/step-000004 (step 4)" in caplog.text and "damaged" not in caplog.text
    wa, wb = weights(runs[0] / "ref" / "model"), weights(tmp_path / "b" / "model")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
