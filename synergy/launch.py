"""One training job, N processes: run a trainer in one process or launch it with torchrun (docs/slurm.md).

A training rule that asks for N GPUs (``resources:`` of the study config, synergy/resources/)
gets one Slurm job with N GPUs; its script calls ``run_trainer(..., processes=N)``, which starts
``python -m torch.distributed.run --standalone --nproc_per_node N -m synergy.launch <spec>``
(torchrun: one process per GPU, rendezvous on a free local port, so jobs sharing a node never
collide). Every process builds the same ``Accelerator`` (synergy.train.core.build_accelerator):
DeepSpeed ZeRO at the configured ``deepspeed_stage`` (the paper study: 3), NCCL on GPUs; on CPU
the same path runs over gloo (tests/test_distributed.py trains the tiny model with 2 processes
and ZeRO-3 and checks it against one process). With N = 1 the trainer runs in the calling process.

The trainer's arguments travel in a JSON spec next to the training state (``state_dir``'s
parent): the rows as a parquet file, the settings as a plain mapping rebuilt into their frozen
dataclass in each process, the rest as JSON values (sets are kept as sets). Rank 0 logs at INFO
to the rule's log (appended), other ranks only warnings; rank 0 writes the trainer's return value,
which ``run_trainer`` returns. A failed process fails the whole launch with an error naming the
trainer and the log. Multi-node launches are not built (docs/slurm.md has a sketch).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("synergy.launch")

# trainer name -> (module, function, settings class in synergy.config)
TRAINERS = {
    "sft": ("synergy.train.sft_trainer", "train_sft", "SFTSettings"),
    "grpo": ("synergy.train.grpo", "train_grpo", "GRPOSettings"),
}


class LaunchError(RuntimeError):
    """A launched training process failed; the message names the trainer, the exit status and the log."""


def _trainer(name: str):
    if name not in TRAINERS:
        raise KeyError(f"unknown trainer {name!r} (known: {sorted(TRAINERS)})")
    module, function, settings = TRAINERS[name]
    config = importlib.import_module("synergy.config")
    return getattr(importlib.import_module(module), function), getattr(config, settings)


def _encode(value):
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted(value, key=str)}
    if isinstance(value, Path):
        return str(value)
    return value


def _decode(value):
    if isinstance(value, dict) and set(value) == {"__set__"}:
        return set(value["__set__"])
    return value


def run_trainer(trainer: str, *, processes: int, init_dir, rows: Sequence[Mapping], out_dir, log_path, state_dir, cfg,
                threads: int | None = None, log_file: str | Path | None = None, **kwargs) -> Any:
    """Run ``trainer`` (``sft`` or ``grpo``) with ``processes`` processes; return what the trainer returns.

    ``cfg`` is the trainer's settings dataclass; ``kwargs`` go to the trainer unchanged (JSON values
    or sets). ``threads`` (the job's CPUs) are split evenly over the processes (OMP_NUM_THREADS).
    """
    fn, settings_cls = _trainer(trainer)
    if not isinstance(cfg, settings_cls):
        raise TypeError(f"trainer {trainer!r} takes {settings_cls.__name__}, got {type(cfg).__name__}")
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        return fn(init_dir, rows, out_dir, log_path=log_path, state_dir=state_dir, cfg=cfg, **kwargs)

    state_dir = Path(state_dir)
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    spec_dir = Path(tempfile.mkdtemp(prefix=f".launch-{state_dir.name}-", dir=state_dir.parent))
    try:
        import pyarrow as pa

        from synergy.io import write_parquet

        write_parquet(pa.Table.from_pylist(list(rows)), spec_dir / "rows.parquet")
        spec = {
            "trainer": trainer,
            "args": {"init_dir": str(init_dir), "out_dir": str(out_dir), "log_path": str(log_path),
                     "state_dir": str(state_dir)},
            "cfg": dataclasses.asdict(cfg),
            "kwargs": {k: _encode(v) for k, v in kwargs.items()},
            "log_file": str(log_file) if log_file else None,
            "result": str(spec_dir / "result.json"),
        }
        (spec_dir / "spec.json").write_text(json.dumps(spec, indent=1))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "synergy.launch", str(spec_dir / "spec.json")]
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, int(threads) // processes))
        log.info("launching %s trainer in %d processes: %s", trainer, processes, " ".join(cmd))
        done = subprocess.run(cmd, env=env)
        if done.returncode != 0:
            raise LaunchError(f"{trainer} training with {processes} processes failed (exit status {done.returncode}); "
                              f"see {log_file or 'the job log'} (each rank's traceback is on stderr)")
        result = spec_dir / "result.json"
        return json.loads(result.read_text()) if result.is_file() else None
    finally:
        shutil.rmtree(spec_dir, ignore_errors=True)


def _worker_logging(log_file: str | None, rank: int) -> None:
    fmt = f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s"
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=fmt, handlers=handlers, force=True)
    logging.captureWarnings(True)


def main(argv: Sequence[str]) -> None:
    """Entry point of each launched process: ``python -m synergy.launch <spec.json>``."""
    if len(argv) != 1:
        raise SystemExit("usage: python -m synergy.launch SPEC_JSON (started by torchrun; see run_trainer)")
    spec = json.loads(Path(argv[0]).read_text())
    rank = int(os.environ.get("RANK", "0"))
    _worker_logging(spec["log_file"], rank)
    import torch

    from synergy.io import read_rows

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    fn, settings_cls = _trainer(spec["trainer"])
    cfg = settings_cls.from_dict(spec["cfg"], spec["trainer"])
    rows = read_rows(Path(spec["result"]).with_name("rows.parquet"))
    a = spec["args"]
    kwargs = {k: _decode(v) for k, v in spec["kwargs"].items()}
    result = fn(a["init_dir"], rows, a["out_dir"], log_path=a["log_path"], state_dir=a["state_dir"], cfg=cfg, **kwargs)
    if rank == 0:
        Path(spec["result"]).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
