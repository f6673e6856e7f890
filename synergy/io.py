"""Atomic file output and parquet helpers.

Every output is written to a temporary name in the same folder and renamed into place when it
is complete, so a job killed at any moment never leaves a file that looks finished. The file is
flushed to disk (``fsync``) before the rename and the folder after it, so a finished file also
survives the machine going down right after the job ends (on file systems that honour fsync).

Parquet output is deterministic: the same table gives the same bytes (pyarrow writes no
timestamp into the file; ``created_by`` is the library version), which
tests/test_reliability_workflow.py checks across two fresh runs of the workflow.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name is hidden (``.NAME.XXXX.tmp``) so no glob of outputs picks it up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
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
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_rows(path: str | Path) -> list[dict]:
    """All rows of a parquet file as dicts (an unreadable file raises naming it)."""
    return pq.read_table(path).to_pylist()
