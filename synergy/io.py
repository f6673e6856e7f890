"""Atomic file output and parquet helpers.

Every output is written to a temporary name in the same folder and renamed into place when it
is complete, so a job killed at any moment never leaves a file that looks finished. The file is
flushed to disk (``fsync``) before the rename and the folder after it, so a finished file also
survives the machine going down right after the job ends (on file systems that honour fsync).

A write that runs out of space (``ENOSPC``, a quota, a file-size limit) raises ``DiskFull`` naming
the folder, the space the output needs and the space free there (``disk_full_guard``); the
temporary file is removed and the previous version of the output is untouched.

Outputs get the permissions any new file gets (``0o666`` less the process's umask; folders ``0o777`` less
it): a team whose umask is 002 shares a project folder's checkpoints and tables. ``tempfile.mkstemp``, which
makes the temporary name safely, creates it owner-only (0600), so ``atomic_path`` sets the mode before the
rename; ``share_tree`` does the same for a folder built under a temporary name (models, training states).

Parquet output is deterministic: the same table gives the same bytes (pyarrow writes no
timestamp into the file; ``created_by`` is the library version), which
tests/test_reliability_workflow.py checks across two fresh runs of the workflow.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the current umask (0o644 under 022, 0o664 under 002)."""
    return 0o666 & ~current_umask()


def share_tree(root: str | Path) -> None:
    """Give ``root`` and everything under it the modes new files and folders get under the current umask."""
    root = Path(root)
    mask = current_umask()
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DiskFull(OSError):
    """A write ran out of space; the message names the folder, the space needed and what was kept whole."""


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# libraries that lose the errno on the way up: safetensors (Rust io errors), torch.save's stream writer
_DISK_FULL_TEXT = re.compile(r"No space left on device|StorageFull|os error (?:28|27|122)|File too large|"
                             r"Disk quota exceeded|FileTooLarge|file write failed|unexpected pos", re.I)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    for _ in range(10):
        if exc is None:
            return
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException) -> bool:
    """Did ``exc`` (or an exception it was raised from) come from running out of space or a file-size limit?"""
    return any((isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS) or _DISK_FULL_TEXT.search(str(e))
               for e in _chain(exc))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def folder_bytes(path: str | Path) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def disk_full_message(folder: str | Path, needed: int | None, what: str, kept: str, exc: BaseException) -> str:
    folder = Path(folder)
    try:
        free = human_bytes(shutil.disk_usage(folder if folder.exists() else folder.parent).free)
    except OSError:
        free = "unknown"
    need = f"about {human_bytes(needed)}" if needed else "an unknown amount"
    return (f"out of disk space while writing {what} in {folder} ({type(exc).__name__}: {str(exc).strip()[:200]}). "
            f"It needs {need}; {free} free there. {kept} Free at least that much in {folder} (or point the "
            "results folder at a bigger disk; a file-size limit, `ulimit -f`, gives the same error) and rerun.")


@contextlib.contextmanager
def disk_full_guard(folder: str | Path, needed: int | None, what: str, kept: str,
                    cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Re-raise a disk-full error inside the block as ``DiskFull`` naming ``folder``, ``needed`` bytes and ``kept``.

    ``cleanup`` (removing the partial output) runs first, so the message gives the space free without it.
    """
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        if cleanup is not None:
            cleanup()
        full = DiskFull(disk_full_message(folder, needed, what, kept, exc))
        full.errno = next((e.errno for e in _chain(exc) if isinstance(e, OSError) and e.errno), errno.ENOSPC)
        raise full from exc


@contextlib.contextmanager
def atomic_path(path: str | Path, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name is hidden (``.NAME.XXXX.tmp``) so no glob of outputs picks it up. Running out
    of space raises ``DiskFull`` (``needed``: the expected size in bytes, for its message).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = f"The previous {path.name} is whole." if path.exists() else f"No {path.name} was written."
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())  # mkstemp makes it 0600; the output gets the mode of any new file
    os.close(fd)
    tmp = Path(tmp)
    try:
        with disk_full_guard(path.parent, needed, path.name, kept, cleanup=lambda: tmp.unlink(missing_ok=True)):
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write a table atomically (zstd, deterministic: no timestamps in parquet metadata)."""
    with atomic_path(path, needed=table.nbytes) as tmp:  # uncompressed size: an upper bound
        pq.write_table(table, tmp, compression="zstd")


def write_text(text: str, path: str | Path) -> None:
    data = text.encode()
    with atomic_path(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def read_rows(path: str | Path) -> list[dict]:
    """All rows of a parquet file as dicts (an unreadable file raises naming it)."""
    return pq.read_table(path).to_pylist()
