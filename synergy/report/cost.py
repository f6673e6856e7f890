"""What each arm cost, end to end: ``results/<study>/tables/cost.{csv,md}`` (its figure: synergy.report.figures.cost_accuracy).

Not a paper section (the paper gives no compute per arm): docs/cost.md. The jobs behind each arm come from
synergy/workflow/cost.py (own training, what it builds on, its evaluation, the shared stages). Each job's numbers
come from one of two sources, named in the ``source`` column:

* ``benchmark``: Snakemake's ``benchmark:`` file of the job (wall seconds ``s``, ``cpu_time``, ``max_rss`` in MB),
  with GPU-hours = wall seconds x the GPUs the rule's ``resources:`` ask for / 3600;
* ``sacct``: Slurm's accounting of the job's allocation where Slurm ran it and ``sacct`` answers (elapsed
  seconds, TotalCPU, the largest MaxRSS of its steps, ``gres/gpu`` of AllocTRES), matched to the job by the
  comment snakemake-executor-plugin-slurm gives every job (``rule_<rule>_wildcards_<values>``) and the working
  directory (docs/cost.md §3). A row whose jobs came from both says ``benchmark+sacct``.

A value a benchmark file gives as ``NA`` (a job too short to be sampled) counts as 0 in the sums; the
``unmeasured`` column counts such jobs. Reads TSV / CSV only; never imports torch.
"""

from __future__ import annotations

import csv
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from synergy.io import write_text
from synergy.report.tables import to_markdown, write_table

STAGES = ("train", "builds_on", "evaluation", "shared")
TITLE = "Cost of every arm, end to end: wall seconds by stage, CPU seconds, peak memory and GPU-hours"
NOTE = ("train: the arm's own training or merge; builds_on: its parents' trainings, the base model's rollouts on the "
        "RL queries, the mixing set; evaluation: its own evaluation; shared: data, base model and difficulty "
        "stage, the same for every arm and counted in full in each arm's total (the last row counts every job once)")


@dataclass(frozen=True)
class JobCost:
    wall_s: float
    cpu_s: float
    rss_mb: float
    gpu_hours: float
    source: str          # benchmark | sacct
    measured: bool = True


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_benchmark(path: str | Path, gpus: int = 0) -> JobCost:
    """One job's ``benchmark:`` file (the last line, if the rule repeats itself); ``FileNotFoundError`` names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: benchmark file missing (has the job run?)")
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or _number(rows[-1].get("s")) is None:
        raise ValueError(f"{path}: no wall-clock seconds (column 's') in this benchmark file")
    last = rows[-1]
    wall, cpu, rss = _number(last["s"]), _number(last.get("cpu_time")), _number(last.get("max_rss"))
    return JobCost(wall, cpu or 0.0, rss or 0.0, wall * gpus / 3600, "benchmark", cpu is not None and rss is not None)


# --------------------------------------------------------------------------- Slurm accounting

SACCT_FIELDS = ("JobIDRaw", "Comment", "WorkDir", "State", "ElapsedRaw", "TotalCPU", "MaxRSS", "AllocTRES", "End")


def _seconds(text: str) -> float:
    """sacct's ``[D-][HH:]MM:SS[.mmm]`` as seconds."""
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = [float(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def _megabytes(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMGT]?)", text.strip())
    if not m:
        return 0.0
    return float(m.group(1)) * {"": 1 / 1024**2, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}[m.group(2)]


def parse_sacct(text: str) -> list[dict]:
    """Allocations of ``sacct -n -P -o <SACCT_FIELDS>`` (steps folded into their allocation: the largest MaxRSS)."""
    allocs: dict[str, dict] = {}
    steps: list[tuple[str, float]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = line.split("|")
        if len(cells) != len(SACCT_FIELDS):
            raise ValueError(f"sacct line has {len(cells)} fields, expected {len(SACCT_FIELDS)}: {line!r}")
        rec = dict(zip(SACCT_FIELDS, cells))
        job, _, step = rec["JobIDRaw"].partition(".")
        if step:
            steps.append((job, _megabytes(rec["MaxRSS"])))
            continue
        gpus = re.search(r"gres/gpu(?::[^=,]+)?=(\d+)", rec["AllocTRES"])
        allocs[job] = {"job": job, "comment": rec["Comment"], "workdir": rec["WorkDir"], "state": rec["State"],
                       "end": rec["End"], "wall_s": float(rec["ElapsedRaw"] or 0), "cpu_s": _seconds(rec["TotalCPU"] or "0"),
                       "rss_mb": _megabytes(rec["MaxRSS"]), "gpus": int(gpus.group(1)) if gpus else 0}
    for job, rss in steps:
        if job in allocs:
            allocs[job]["rss_mb"] = max(allocs[job]["rss_mb"], rss)
    return list(allocs.values())


def read_sacct(start: str, runner=subprocess.run) -> list[dict] | None:
    """This user's Slurm allocations since ``start`` (``YYYY-MM-DDTHH:MM:SS``), or None when there is no working
    ``sacct`` (no Slurm, or no accounting database)."""
    try:
        out = runner(["sacct", "-n", "-P", "-S", start, "-o", ",".join(SACCT_FIELDS)], capture_output=True,
                     text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return parse_sacct(out.stdout)


def _norm(text: str) -> str:
    return re.sub(r"[./]", "_", text)


def sacct_match(records: Sequence[dict], rule: str, benchmark: str, study: str, workdir: str) -> dict | None:
    """The newest completed allocation of the job whose benchmark file is ``benchmark`` (module docstring)."""
    tail = benchmark.split(f"/benchmarks/{rule}/", 1)[-1].removesuffix(".tsv")
    wanted = {_norm(f"{study}_{tail}"), _norm(study)}
    found = [r for r in records
             if r["state"].startswith("COMPLETED") and r["workdir"].rstrip("/") == workdir.rstrip("/")
             and r["comment"].startswith(f"rule_{rule}_wildcards_")
             and _norm(r["comment"][len(f"rule_{rule}_wildcards_"):]) in wanted]
    return max(found, key=lambda r: r["end"]) if found else None


def job_cost(rule: str, benchmark: str, gpus: Mapping[str, int], *, root: Path, sacct: Sequence[dict] | None = None,
             study: str = "", workdir: str = "") -> JobCost:
    """One job's cost: from Slurm's accounting when it has the job, else from its benchmark file."""
    if sacct:
        rec = sacct_match(sacct, rule, benchmark, study, workdir)
        if rec is not None:
            return JobCost(rec["wall_s"], rec["cpu_s"], rec["rss_mb"], rec["wall_s"] * rec["gpus"] / 3600, "sacct")
    return read_benchmark(root / benchmark, int(gpus.get(rule, 0)))


# --------------------------------------------------------------------------- the table


def _sum(costs: Iterable[JobCost]) -> dict:
    costs = list(costs)
    return {"wall_s": sum(c.wall_s for c in costs), "cpu_s": sum(c.cpu_s for c in costs),
            "rss_mb": max((c.rss_mb for c in costs), default=0.0), "gpu_hours": sum(c.gpu_hours for c in costs),
            "jobs": len(costs), "unmeasured": sum(not c.measured for c in costs),
            "sources": sorted({c.source for c in costs})}


def cost_table(graph: Mapping, costs: Mapping[str, JobCost]) -> pl.DataFrame:
    """One row per arm and a last ``study`` row (every job once); ``costs`` maps a benchmark path to its job's cost."""
    rows = []
    shared = [costs[p] for _, p in graph["shared"]]
    for arm in graph["arms"]:
        stage = {s: [costs[p] for _, p in (arm[s] if s != "shared" else graph["shared"])] for s in STAGES}
        every = [c for s in STAGES for c in stage[s]]
        total = _sum(every)
        rows.append({"arm": arm["arm"], "kind": arm["kind"],
                     **{f"{s}_s": _sum(stage[s])["wall_s"] for s in STAGES}, "total_s": total["wall_s"],
                     "cpu_s": total["cpu_s"], "peak_rss_mb": total["rss_mb"], "gpu_hours": total["gpu_hours"],
                     "own_gpu_hours": _sum(stage["train"] + stage["builds_on"])["gpu_hours"],
                     "jobs": total["jobs"], "unmeasured": total["unmeasured"], "source": "+".join(total["sources"])})
    paths = list(dict.fromkeys([p for a in graph["arms"] for s in STAGES[:3] for _, p in a[s]]
                               + [p for _, p in graph["shared"]]))
    every = _sum(costs[p] for p in paths)
    own = set(paths) - {p for _, p in graph["shared"]}
    rows.append({"arm": "study (every job once)", "kind": "", "train_s": None, "builds_on_s": None, "evaluation_s": None,
                 "shared_s": _sum(shared)["wall_s"], "total_s": every["wall_s"], "cpu_s": every["cpu_s"],
                 "peak_rss_mb": every["rss_mb"], "gpu_hours": every["gpu_hours"],
                 "own_gpu_hours": _sum(costs[p] for p in own)["gpu_hours"], "jobs": every["jobs"],
                 "unmeasured": every["unmeasured"], "source": "+".join(every["sources"])})
    return pl.DataFrame(rows, schema_overrides={f"{s}_s": pl.Float64 for s in STAGES})


def tabulate_cost(graph: Mapping, csv_path: str | Path, md_path: str | Path, *, root: str | Path = ".",
                  sacct: Sequence[dict] | None = None, study: str = "", workdir: str = "") -> pl.DataFrame:
    """Read every job's cost, write ``cost.csv`` and ``cost.md``; return the table."""
    root = Path(root)
    jobs = [j for a in graph["arms"] for s in STAGES[:3] for j in a[s]] + list(graph["shared"])
    costs = {p: job_cost(rule, p, graph["gpus"], root=root, sacct=sacct, study=study, workdir=workdir) for rule, p in jobs}
    table = cost_table(graph, costs)
    write_table(table, csv_path)
    hours = [pl.col(c).map_elements(lambda v: f"{v:.3f}", return_dtype=pl.String) for c in ("gpu_hours", "own_gpu_hours")]
    write_text(f"# {TITLE}\n\n{to_markdown(table.with_columns(hours))}\n{NOTE}.\n", md_path)
    return table
