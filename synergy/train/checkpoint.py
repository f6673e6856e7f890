"""Training states: saved atomically with checksums, verified before a resume (docs/reliability.md §3).

Part of the one training core (``synergy.train.core`` re-exports ``Checkpointer``). A state is a folder
``state_dir/step-NNNNNN`` holding accelerate's files (weights as safetensors, optimiser and RNG, ZeRO
shards on GPUs), ``scheduler.json``, ``trainer_state.json`` (the trainer's counters and the run's
fingerprint) and ``checksums.json`` (size and SHA-256 of every other file). It is written under
``.tmp-step-NNNNNN`` and renamed when complete.

* **Disk full.** A save that runs out of space (``ENOSPC``, a quota, a file-size limit) removes its
  partial folder and raises ``DiskFull`` naming the folder, the space a state needs (the previous
  state's size, else an estimate from the model and optimiser) and the space free; the previous
  states are untouched (old states are pruned only after a new one is complete).
* **A damaged state.** A node that crashed while its page cache held unwritten data, or a copy cut
  short, can leave a complete-looking state with a truncated or zero-byte file. ``restore`` checks every
  candidate against its checksums (sizes first, then SHA-256; about 0.6 GB/s on the development machine)
  on the main process, which skips a damaged one with a warning naming the file and moves it aside to
  the hidden ``.damaged-step-NNNNNN`` (a leftover, safe to delete); the run resumes from the newest good
  state (with several processes the main process's choice is broadcast to all).
  A state written before checksums existed is taken as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from synergy.io import disk_full_guard, folder_bytes, share_tree

log = logging.getLogger("synergy.train")

SCHEDULER_FILE = "scheduler.json"
STATE_FILE = "trainer_state.json"
CHECKSUM_FILE = "checksums.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(folder: Path) -> None:
    """``checksums.json``: ``{relative path: [size, sha256]}`` of every file in ``folder`` but itself."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE)
    sums = {str(p.relative_to(folder)): [p.stat().st_size, _sha256(p)] for p in files}
    (folder / CHECKSUM_FILE).write_text(json.dumps(sums, indent=0, sort_keys=True))


def state_problem(folder: Path, hashes: bool = True) -> str | None:
    """None if the state in ``folder`` matches its checksums, else what is wrong (file, sizes)."""
    try:
        json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        return f"{STATE_FILE} is unreadable ({type(exc).__name__}: {exc})"
    sums_path = folder / CHECKSUM_FILE
    if not sums_path.is_file():
        return None  # a state from before checksums: nothing to check it against
    try:
        sums = json.loads(sums_path.read_text())
    except (OSError, ValueError) as exc:
        return f"{CHECKSUM_FILE} is unreadable ({type(exc).__name__}: {exc})"
    for rel, (size, digest) in sums.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{rel} is {actual} bytes, {size} were written"
    if hashes:
        for rel, (_, digest) in sums.items():
            if _sha256(folder / rel) != digest:
                return f"{rel} does not match its SHA-256 checksum"
    return None


def _estimate_state_bytes(accelerator) -> int:
    """Weights plus AdamW's two moments of every prepared model (a state before the first one exists)."""
    params = sum(p.numel() * p.element_size() for m in getattr(accelerator, "_models", []) for p in m.parameters())
    return 3 * params + 2**20


class Checkpointer:
    """Full training states under ``state_dir/step-NNNNNN`` (atomic, with checksums), newest ``keep_last`` kept.

    ``scheduler`` (a ``torch.optim.lr_scheduler`` object, optional) is saved as JSON inside each
    state and restored from it; no pickled custom object is written or read.
    """

    def __init__(self, accelerator, state_dir: str | Path, run_fingerprint: str, keep_last: int = 2,
                 scheduler=None):
        self.accelerator = accelerator
        self.state_dir = Path(state_dir)
        self.fingerprint = run_fingerprint
        self.keep_last = keep_last
        self.scheduler = scheduler

    def _states(self) -> list[Path]:
        if not self.state_dir.is_dir():
            return []
        return sorted(p for p in self.state_dir.glob("step-*") if (p / STATE_FILE).is_file())

    def _needed(self) -> int:
        states = self._states()
        return folder_bytes(states[-1]) if states else _estimate_state_bytes(self.accelerator)

    def save(self, trainer_state: Mapping[str, Any]) -> Path:
        """Save weights, optimiser, scheduler, RNG and ``trainer_state`` (must hold ``step``), with checksums."""
        step = int(trainer_state["step"])
        final = self.state_dir / f"step-{step:06d}"
        tmp = self.state_dir / f".tmp-step-{step:06d}"
        states = self._states()
        kept = (f"The previous state {states[-1]} is whole and a rerun resumes from it." if states
                else "No state was saved before: a rerun starts from step 0.")
        needed = self._needed()
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()

        def cleanup() -> None:  # give the space back; the old states are untouched
            if self.accelerator.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)

        with disk_full_guard(self.state_dir, needed, f"the training state of step {step}", kept, cleanup):
            self.accelerator.save_state(str(tmp), safe_serialization=True)
            self.accelerator.wait_for_everyone()  # every rank has written its files before the checksums
            if self.accelerator.is_main_process:
                payload = {**trainer_state, "fingerprint": self.fingerprint}
                if self.scheduler is not None:
                    (tmp / SCHEDULER_FILE).write_text(json.dumps(_scheduler_state(self.scheduler),
                                                                 default=_json_default))
                (tmp / STATE_FILE).write_text(json.dumps(payload, default=_json_default))
                write_checksums(tmp)
        if self.accelerator.is_main_process:
            share_tree(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self._states()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        log.info("saved training state at step %d -> %s", step, final)
        return final

    def _set_aside(self, path: Path, problem: str) -> None:
        aside = path.with_name(f".damaged-{path.name}")
        log.warning("training state %s is damaged: %s; it is skipped and moved to %s", path, problem, aside)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(path, aside)

    def _choose(self) -> tuple[Path, dict] | None:
        """The newest undamaged state of this run, checked against its checksums; damaged ones are set aside."""
        skipped = []
        for path in reversed(self._states()):
            problem = state_problem(path)
            if problem is not None:
                self._set_aside(path, problem)
                skipped.append(path.name)
                continue
            state = json.loads((path / STATE_FILE).read_text())
            if state.get("fingerprint") == self.fingerprint:
                if skipped:
                    log.warning("resuming from the previous good state %s (step %d) instead of the damaged %s",
                                path, state["step"], ", ".join(skipped))
                return path, state
            log.warning("ignoring training state %s: it belongs to a run with other settings", path)
        return None

    def latest(self) -> tuple[Path, dict] | None:
        """The newest complete state of this run whose file sizes match its checksums, or None (cheap, no side
        effects: for messages; ``restore`` checks the SHA-256 sums too)."""
        for path in reversed(self._states()):
            if state_problem(path, hashes=False) is not None:
                continue
            state = json.loads((path / STATE_FILE).read_text())
            if state.get("fingerprint") == self.fingerprint:
                return path, state
        return None

    def restore(self) -> dict | None:
        """Load the newest undamaged matching state into the accelerator's objects; return its trainer state.

        The main process checks the states (sizes and SHA-256) and chooses; with several processes its
        choice is broadcast, so every rank loads the same state and the files are hashed once.
        """
        found = self._choose() if self.accelerator.is_main_process else None
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            box = [None if found is None else (str(found[0]), found[1])]
            broadcast_object_list(box, from_process=0)
            found = None if box[0] is None else (Path(box[0][0]), box[0][1])
        if found is None:
            return None
        path, state = found
        self.accelerator.load_state(str(path))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(json.loads((path / SCHEDULER_FILE).read_text()))
        log.info("resumed from %s (step %d)", path, state["step"])
        return state

    def clear(self) -> None:
        """Remove every saved state (after the final model is written)."""
        if self.accelerator.is_main_process:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _scheduler_state(scheduler) -> dict:
    """A scheduler's state_dict without its callables (LambdaLR keeps None for plain functions)."""
    state = scheduler.state_dict()
    if any(x is not None for x in state.get("lr_lambdas", [])):
        raise TypeError("cannot save a scheduler whose lr_lambdas carry state; use plain functions")
    return state


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def latest_state(state_dir: str | Path) -> tuple[Path, int] | None:
    """The newest complete state folder under ``state_dir`` whose file sizes match its checksums, and its
    step (whatever run it belongs to), or None."""
    folder = Path(state_dir)
    states = sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file()) if folder.is_dir() else []
    for path in reversed(states):
        if state_problem(path, hashes=False) is None:
            try:
                return path, int(json.loads((path / STATE_FILE).read_text())["step"])
            except (OSError, ValueError, KeyError):
                continue
    return None
