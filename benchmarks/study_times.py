"""Per-rule times of a finished study run, from Snakemake's ``benchmark:`` files (README.md quotes them).

    python benchmarks/study_times.py [STUDY_DIR]        # default: results/embedded (the embedded study)

STUDY_DIR is a study's results folder, ``results/<study.name>`` of the directory the study ran in. Reads every
``STUDY_DIR/benchmarks/<rule>/**.tsv`` (one per job: wall seconds ``s``, peak RSS
``max_rss`` in MB, CPU seconds ``cpu_time``), prints one line per rule (jobs, total / mean / max wall
seconds, CPU seconds, peak RSS) sorted by total, the slowest jobs, and the sums. The wall clock of the
whole run is the span from the first job's start to the last job's end as Snakemake's newest log in
``.snakemake/log/`` records them (``[date]`` lines); with 2 cores the sum of job seconds is at most
twice that span.
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


def run_span(workdir: Path) -> float | None:
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        return None
    stamps = [datetime.strptime(m, "%a %b %d %H:%M:%S %Y")
              for m in re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", logs[-1].read_text(), re.M)]
    return (max(stamps) - min(stamps)).total_seconds() if len(stamps) > 1 else None


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
    span = run_span(workdir)
    if span is not None:
        print(f"wall clock of the run (first job start to last job end, .snakemake/log): {span:.0f} s = {span / 60:.1f} min")


if __name__ == "__main__":
    main(sys.argv)
