"""Run by tests/test_reliability_disk.py in a subprocess (not a test module): fill the disk during saves.

    python tests/diskfull_probe.py MODEL_DIR WORK_DIR {tmpfs,rlimit}

Saves a training state (step 1), a parquet output and a model folder; then takes the space away
(``tmpfs``: WORK_DIR is a small tmpfs, a filler file leaves a third of a state free; ``rlimit``:
RLIMIT_FSIZE of this process set to a third of the largest state file, so writes fail with EFBIG)
and tries to save step 2, rewrite the parquet file and replace the model folder. Prints one JSON
line: the three error messages and what each save left behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
from pathlib import Path

import polars as pl
import torch

from synergy.io import DiskFull, folder_bytes, write_parquet
from synergy.models import load_model, save_model
from synergy.train.checkpoint import Checkpointer, state_problem
from synergy.train.core import OptimSettings, build_accelerator, build_optimizer


def digest(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def step(model, opt) -> None:
    loss = sum((p.float() ** 2).mean() for p in model.parameters() if p.requires_grad)
    loss.backward()
    opt.step()
    opt.zero_grad()


def attempt(fn) -> str | None:
    try:
        fn()
    except DiskFull as exc:
        return str(exc)
    return None


def main(model_dir: str, work: str, mode: str) -> None:
    work = Path(work)
    torch.manual_seed(0)
    acc = build_accelerator(seed=0)
    model, processor = load_model(model_dir)
    opt, sched = build_optimizer(model, OptimSettings(learning_rate=1e-3), total_steps=10)
    model, opt = acc.prepare(model, opt)
    ck = Checkpointer(acc, work / "state", "probe", scheduler=sched)
    step(model, opt)
    first = ck.save({"step": 1})
    write_parquet(pl.DataFrame({"x": list(range(100))}).to_arrow(), work / "out.parquet")
    save_model(acc.unwrap_model(model), processor, work / "model")
    before = {**digest(first), **digest(work / "out.parquet"), **digest(work / "model")}
    state_bytes = folder_bytes(first)
    largest = max(p.stat().st_size for p in first.iterdir())
    if mode == "tmpfs":
        free = os.statvfs(work).f_bavail * os.statvfs(work).f_frsize
        with open(work / "filler", "wb") as f:
            f.write(b"\0" * (free - state_bytes // 3))
    else:
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest // 3, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    step(model, opt)
    big = pl.DataFrame({"x": [os.urandom(64).hex() for _ in range(2 * largest // 128)]}).to_arrow()
    errors = {
        "state": attempt(lambda: ck.save({"step": 2})),
        "parquet": attempt(lambda: write_parquet(big, work / "out.parquet")),
        "model": attempt(lambda: save_model(acc.unwrap_model(model), processor, work / "model")),
    }
    if mode == "tmpfs":
        (work / "filler").unlink()
    else:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    after = {**digest(first), **digest(work / "out.parquet"), **digest(work / "model")}
    found = ck.latest()
    print(json.dumps({
        "errors": errors, "unchanged": before == after, "state_problem": state_problem(first),
        "latest": found[0].name if found else None, "state_bytes": state_bytes,
        "left": sorted(p.name for p in (work / "state").iterdir()) + sorted(p.name for p in work.iterdir()),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
