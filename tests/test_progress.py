"""Progress lines (done/total, rate, ETA) in logs, a tqdm bar in a terminal, and vLLM's chunks."""
import io
import logging

import pytest

from synergy.logs import _not_progress_on_a_terminal
from synergy.progress import Progress, format_seconds


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _records(caplog):
    return [r.getMessage() for r in caplog.records if getattr(r, "progress", False)]


def test_lines_give_done_total_rate_and_eta(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO)
    p = Progress(500, "generate bench.parquet", "prompts", every_s=30, bar=False, clock=clock)
    clock.t += 40
    p.update(120)
    assert _records(caplog)[-1] == ("generate bench.parquet: 120/500 prompts (24%), 3 prompts/s, elapsed 40s, "
                                    "ETA 2m07s")
    clock.t += 5
    p.update(130)  # 5 s after the last line: not due
    assert len(_records(caplog)) == 1
    clock.t += 30
    p.update(250, "loss 1.2")
    assert _records(caplog)[-1].endswith("3.33 prompts/s, elapsed 1m15s, ETA 1m15s; loss 1.2") and len(_records(caplog)) == 2
    clock.t += 1
    p.update(500)  # the end is always logged
    assert _records(caplog)[-1].startswith("generate bench.parquet: 500/500 prompts (100%)")
    assert "ETA 0s" in _records(caplog)[-1]


def test_a_resumed_run_measures_its_own_rate(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO)
    p = Progress(100, "sft arm", "steps", every_s=0, start_done=60, bar=False, clock=clock)
    clock.t += 20
    p.update(70)
    assert "70/100 steps (70%), 0.5 steps/s" in _records(caplog)[-1] and "ETA 1m00s" in _records(caplog)[-1]


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.4, 61, 3599, 3600, 7500)] == ["0s", "59s", "1m01s", "59m59s",
                                                                          "1h00m", "2h05m"]


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_no_progress_lines(monkeypatch, caplog):
    import sys

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    caplog.set_level(logging.INFO)
    p = Progress(4, "evaluate", "prompts", every_s=0)
    assert p.bar is not None
    for d in range(1, 5):
        p.update(d)
    assert "4/4" in tty.getvalue() and "evaluate" in tty.getvalue()  # tqdm drew its bar on the terminal
    rec = [r for r in caplog.records if getattr(r, "progress", False)][-1]
    assert not _not_progress_on_a_terminal(rec)  # the terminal's handler drops the line; the log file keeps it
    plain = logging.LogRecord("x", logging.INFO, "", 0, "other", None, None)
    assert _not_progress_on_a_terminal(plain)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: lines on stderr too, no bar
    assert _not_progress_on_a_terminal(rec) and Progress(3, "x", bar=None).bar is None


def test_vllm_prompts_go_in_chunks_that_cover_every_prompt_once():
    from synergy.generate.vllm import PROGRESS_CHUNK, chunks

    assert chunks(0) == [] and chunks(3, 2) == [(0, 2), (2, 3)]
    spans = chunks(1300)
    assert spans[0] == (0, PROGRESS_CHUNK) and spans[-1][1] == 1300
    assert [i for a, b in spans for i in range(a, b)] == list(range(1300))
    with pytest.raises(ValueError):
        chunks(5, 0)
