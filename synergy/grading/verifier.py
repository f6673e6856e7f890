"""The math-verify child process a ``Grader`` talks to (``synergy.grading.worker``): start, ask, kill, restart.

math-verify's own ``signal.alarm`` timeouts fail outside the main thread, so its calls run in a
persistent child process (JSON lines over pipes, started with ``subprocess.Popen`` so it also works
inside daemonic multiprocessing workers). On the per-item deadline the child is killed and
restarted lazily, and the caller gets ``_Timeout``. Starting a child (about 1-2 s: importing sympy
and the ANTLR parser) has its own limit (``startup_timeout_s``) and is not charged to the item's
deadline. Thread and fork safe: a lock guards the child; an instance inherited through ``fork``
drops the parent's child process and starts its own.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
_LATEX_ENV_RE = re.compile(r"\$|\\\(|\\\[|\\boxed|\\begin\{")


class _Timeout(Exception):
    """The item's deadline passed (the child was killed)."""


class _VerifierError(Exception):
    """The child failed to start, died, or answered out of protocol."""


def _wrap_math(s: str) -> str:
    s = s.strip()
    return s if _LATEX_ENV_RE.search(s) else f"${s}$"


class VerifierProcess:
    """The child process of a ``Grader`` (its base class): lifetime, requests under a deadline, fork safety.

    The subclass owns ``stats`` (a dict with ``verifier_calls`` and ``worker_starts``, counted here)
    and calls ``__init__`` after creating it.
    """

    stats: dict

    def __init__(self, startup_timeout_s: float = 120.0):
        self.startup_timeout_s = float(startup_timeout_s)
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._next_id = 0
        self._pid = os.getpid()

    # -- context manager / lifetime ------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Stop the child process (a later call that needs it starts a new one)."""
        self._check_fork()
        with self._lock:
            proc, self._proc = self._proc, None
            self._buf = b""
            if proc is None:
                return
            try:
                proc.stdin.close()
                proc.wait(timeout=2)
            except Exception:
                self._kill_proc(proc)
            finally:
                self._close_pipes(proc)

    # -- the child process -----------------------------------------------------------------------

    def _verify(self, gold: str, pred: str, float_rounding: int, timeout_s: float) -> dict:
        """math-verify in the child under a deadline; raises _Timeout or _VerifierError."""
        req = {"gold": _wrap_math(gold), "pred": _wrap_math(pred), "float_rounding": int(float_rounding)}
        self._check_fork()
        with self._lock:
            with self._stats_lock:
                self.stats["verifier_calls"] += 1
            proc = self._ensure_proc()
            self._next_id += 1
            req["id"] = self._next_id
            data = (json.dumps(req) + "\n").encode("utf-8")
            deadline = time.monotonic() + max(0.01, float(timeout_s))
            try:
                fd = proc.stdin.fileno()
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                line = self._read_line(proc, deadline)
            except _Timeout:
                self._discard_proc()
                raise
            except (OSError, ValueError, _VerifierError) as exc:
                self._discard_proc()
                raise _VerifierError(f"verifier worker failed: {exc}") from exc
        try:
            resp = json.loads(line)
        except ValueError as exc:
            with self._lock:
                self._discard_proc()
            raise _VerifierError("garbled verifier reply") from exc
        if resp.get("id") != req["id"]:
            with self._lock:
                self._discard_proc()
            raise _VerifierError("verifier reply out of order")
        if not resp.get("ok"):
            raise _VerifierError(resp.get("error", "verifier error"))
        return resp

    def _read_line(self, proc: subprocess.Popen, deadline: float) -> bytes:
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise _Timeout()
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise _VerifierError("verifier worker exited")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _ensure_proc(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._discard_proc()
        env = dict(os.environ)
        env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONHASHSEED", "0")
        proc = subprocess.Popen(
            [sys.executable, "-m", "synergy.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        self._proc = proc
        self._buf = b""
        with self._stats_lock:
            self.stats["worker_starts"] += 1
        try:
            line = self._read_line(proc, time.monotonic() + self.startup_timeout_s)
            hello = json.loads(line)
        except (_Timeout, _VerifierError, ValueError, OSError) as exc:
            self._discard_proc()
            raise _VerifierError(f"verifier worker did not start: {exc!r}") from None
        if not hello.get("ready"):
            self._discard_proc()
            raise _VerifierError(f"verifier worker failed to start: {hello.get('error')}")
        return proc

    def _discard_proc(self) -> None:
        """Kill the child (caller holds the lock); the next verification starts a new one."""
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is not None:
            self._kill_proc(proc)
            self._close_pipes(proc)

    @staticmethod
    def _kill_proc(proc: subprocess.Popen) -> None:
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except Exception:
            pass

    @staticmethod
    def _close_pipes(proc: subprocess.Popen) -> None:
        for f in (proc.stdin, proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass

    def _check_fork(self) -> None:
        """In a forked child, forget the parent's worker and lock (they belong to the parent)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is not None:
            self._close_pipes(proc)  # our copies of the pipes only; the parent's worker lives on
            proc.returncode = 0  # never wait for / kill a process that is not our child

