"""Per-rule times of a finished study run, from Snakemake's ``benchmark:`` files (README.md quotes them).

    python benchmarks/study_times.py [STUDY_DIR]        # default: results/embedded (the embedded study)

STUDY_DIR is a study's results folder, ``results/<study.name>`` of the directory the study ran in. Reads every
``STUDY_DIR/benchmarks/<rule>/**.tsv`` (one per job: wall seconds ``s``, peak RSS
``max_rss`` in MB, CPU seconds ``cpu_time``), prints one line per rule (jobs, total / mean / max wall
seconds, CPU seconds, peak RSS) sorted by total, the slowest jobs, and the sums. The wall clock of the
whole run is the span from the first job's start to the last job's end as Snakemake's newest log in
``.snakemake/log/`` records them (``[date]`` lines); with 2 cores the sum of job seconds is at most
twice that span. From the same log: how many seconds n jobs ran at once, and which job ran alone for 30 s or
more (what a faster schedule could not overlap). Snakemake's ``cpu_time`` samples the job's processes and
can fall well short of the CPU a job used (an evaluation job alone: 36 s wall, ``cpu_time`` 14.5 s, about
30 s of CPU by ``time``): read the CPU column as a lower bound.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

from synergy.report.cost import read_benchmark


def job_rows(study_dir: Path) -> list[dict]:
    """One row per job's benchmark file, read as the cost table reads it (synergy.report.cost.read_benchmark)."""
    rows = []
    root = study_dir / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        job = read_benchmark(path)
        rows.append({"rule": path.relative_to(root).parts[0], "job": str(path.relative_to(root).with_suffix("")),
                     "s": job.wall_s, "cpu": job.cpu_s if job.measured else float("nan"),
                     "rss": job.rss_mb if job.measured else float("nan")})
    return rows


STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def newest_log(workdir: Path) -> str | None:
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    return logs[-1].read_text() if logs else None


def _when(stamp: str) -> datetime:
    return datetime.strptime(" ".join(stamp.split()), "%a %b %d %H:%M:%S %Y")


def run_span(text: str) -> float | None:
    stamps = [_when(m.group(1)) for m in map(STAMP.match, text.splitlines()) if m]
    return (max(stamps) - min(stamps)).total_seconds() if len(stamps) > 1 else None


def job_intervals(text: str) -> list[tuple[str, datetime, datetime]]:
    """(rule, start, end) of every job of a Snakemake log: a job starts at the ``[date]`` line before its
    ``rule X:`` block (whose ``jobid: N`` names it) and ends at the ``[date]`` before ``Finished jobid: N``."""
    now, rule_of, start, out = None, {}, {}, []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stamp = STAMP.match(line)
        if stamp:
            now = _when(stamp.group(1))
            continue
        rule = re.match(r"(?:local)?rule (\w+):$", line)
        if rule:
            for nxt in lines[i + 1:i + 16]:
                job = re.match(r"\s+jobid: (\d+)$", nxt)
                if job:
                    rule_of[job.group(1)], start[job.group(1)] = rule.group(1), now
                    break
        done = re.match(r"Finished jobid: (\d+)", line)
        if done and done.group(1) in start:
            out.append((rule_of[done.group(1)], start[done.group(1)], now))
    return out


def concurrency(jobs: list[tuple[str, datetime, datetime]]) -> tuple[dict[int, float], list[tuple[str, float]]]:
    """Seconds of the run with n jobs running, and the stretches of at least 30 s in which one job ran alone."""
    events = sorted([(s, 0, i) for i, (_, s, _) in enumerate(jobs)] + [(e, 1, i) for i, (_, _, e) in enumerate(jobs)])
    seconds: dict[int, float] = {}
    alone: list[tuple[str, float]] = []
    running: set[int] = set()
    last = events[0][0] if events else None
    for t, kind, i in events:  # at equal times a job starts before another ends (no false gap)
        span = (t - last).total_seconds()
        seconds[len(running)] = seconds.get(len(running), 0.0) + span
        if len(running) == 1 and span >= 30:
            alone.append((jobs[next(iter(running))][0], span))
        last = t
        (running.add if kind == 0 else running.discard)(i)
    return seconds, alone


def main(argv: list[str]) -> None:
    study_dir = Path(argv[1]) if len(argv) > 1 else Path("results/embedded")
    workdir = study_dir.resolve().parent.parent  # results/<name> -> the folder the study ran in (.snakemake/log)
    rows = job_rows(study_dir)
    if not rows:
        raise SystemExit(f"no benchmark files under {study_dir / 'benchmarks'}: has the study run there?")
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)
    print(f"{'rule':28} {'jobs':>4} {'total s':>9} {'mean s':>8} {'max s':>8} {'cpu s':>9} {'max rss MB':>10}")
    for rule, rs in sorted(by_rule.items(), key=lambda kv: -sum(r["s"] for r in kv[1])):
        tot = sum(r["s"] for r in rs)
        print(f"{rule:28} {len(rs):4d} {tot:9.1f} {tot / len(rs):8.1f} {max(r['s'] for r in rs):8.1f} "
              f"{sum(r['cpu'] for r in rs):9.1f} {max(r['rss'] for r in rs):10.0f}")
    total = sum(r["s"] for r in rows)
    print(f"{'all jobs':28} {len(rows):4d} {total:9.1f}   (job seconds; CPU seconds {sum(r['cpu'] for r in rows):.1f})")
    print("slowest jobs:", ", ".join(f"{r['job']} {r['s']:.0f} s" for r in sorted(rows, key=lambda r: -r["s"])[:8]))
    text = newest_log(workdir)
    span = run_span(text) if text else None
    if span is not None:
        print(f"wall clock of the run (first job start to last job end, .snakemake/log): {span:.0f} s = {span / 60:.1f} min")
        seconds, alone = concurrency(job_intervals(text))
        print("jobs running at once (seconds): " + ", ".join(f"{n}: {v:.0f}" for n, v in sorted(seconds.items()) if v)
              + ("; alone: " + ", ".join(f"{r} {v:.0f} s" for r, v in alone) if alone else ""))


if __name__ == "__main__":
    main(sys.argv)
