"""Progress of a long step: ``done/total``, rate and ETA as plain log lines, and a ``tqdm`` bar in a terminal.

Every long loop (sampling n answers per question, SFT and GRPO steps, pretraining, merging tensors) reports
through ``Progress``: ``update(done)`` logs a line such as

    generate: 120/500 prompts (24%), 3.2 prompts/s, elapsed 37s, ETA 1m59s

at most every ``every_s`` seconds and always at the end, so the rule's log file shows how far a job is and
when it should end (an 8-hour evaluation is no longer silent). When stderr is a terminal a ``tqdm`` bar is
drawn there as well, and the progress lines then go to the log file only (``synergy.logs.setup_logging``
drops records marked ``progress`` from a terminal's stream), so the terminal shows one bar, not a scroll of
lines. The rate is measured since the first ``update`` of this run (a resumed training's earlier steps do not
make it look faster).
"""

from __future__ import annotations

import logging
import sys
import time

PROGRESS_ATTR = "progress"  # set on the LogRecords of progress lines (extra={"progress": True})


def format_seconds(seconds: float) -> str:
    """``37s``, ``1m59s``, ``2h05m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def use_bar(stream=None) -> bool:
    """Whether to draw a bar: stderr is a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Reports ``done`` of ``total`` ``unit`` for step ``what`` to ``logger`` (and a tqdm bar in a terminal)."""

    def __init__(self, total: int, what: str, unit: str = "items", *, logger: logging.Logger | None = None,
                 every_s: float = 30.0, start_done: int = 0, bar: bool | None = None, clock=time.monotonic):
        self.total, self.what, self.unit = int(total), what, unit
        self.log = logger or logging.getLogger("synergy.progress")
        self.every_s, self.clock = every_s, clock
        self.start_done = self.done = int(start_done)
        self.t0 = clock()
        self.last_log = None
        self.bar = None
        if bar if bar is not None else use_bar():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc=what, unit=f" {unit}", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def rate(self) -> float:
        """Units per second since this run's first update."""
        return (self.done - self.start_done) / max(self.clock() - self.t0, 1e-9)

    def eta(self) -> float | None:
        """Seconds left at the current rate (None before any unit is done in this run)."""
        r = self.rate()
        return (self.total - self.done) / r if r > 0 else None

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = self.eta()
        return (f"{self.what}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {self.rate():.3g} {self.unit}/s, "
                f"elapsed {format_seconds(self.clock() - self.t0)}, "
                f"ETA {format_seconds(eta) if eta is not None else '?'}")

    def update(self, done: int, extra: str = "") -> None:
        """``done`` units are finished (absolute count); log if due (every ``every_s`` s, and at the end)."""
        if self.bar is not None:
            self.bar.update(int(done) - self.done)
        self.done = int(done)
        now = self.clock()
        finished = self.done >= self.total
        if finished or self.last_log is None or now - self.last_log >= self.every_s:
            self.last_log = now
            self.log.info("%s%s", self.line(), f"; {extra}" if extra else "", extra={PROGRESS_ATTR: True})
        if finished:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
