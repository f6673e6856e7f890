"""Run the study under several seeds and print the findings verdict matrix (claim x seed).

    python benchmarks/findings_seeds.py 3                      # seeds 0, 1, 2 of config/config.yaml
    python benchmarks/findings_seeds.py 3 --workdir /scratch/seeds --jobs 2   # default: the checkout
    python benchmarks/findings_seeds.py 2 --configfile config/config.yaml my-overrides.yaml

Seed k sets ``study.seed`` and ``synthetic.seed`` to k (a new suite, new training order, new samples)
and everything else stays the study's. Each seed runs as its own study (``study.name`` gets ``-seed<k>``),
so its files are ``results/<name>-seed<k>/`` and ``logs/<name>-seed<k>/`` of the working directory, as for any
study (README "Running it"): the seeds never share a file, and ``python -m synergy.compare`` reads any two of
them; a seed already built is not run again. The robustness rule of docs/findings.md §4 is checked at the end: on every seed at
least 10 of the 14 claims hold, and F1, F2, F4 and F6 hold on each. Prints the wall time of each seed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("F1", "F2", "F4", "F6")
MIN_HOLD = 10
SHORT = {"holds": "holds", "opposite": "OPP", "not shown": "-", "not measurable": "n/m"}


def run_seed(seed: int, workdir: Path, configfiles: list[Path], jobs: int) -> tuple[Path, float]:
    wd = workdir
    (wd / ".seeds").mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(configfiles[0].read_text()) or {}
    for extra in configfiles[1:]:
        base.update(yaml.safe_load(extra.read_text()) or {})
    name = (base.get("study") or {}).get("name", "study")
    study = f"{name}-seed{seed}"
    override = wd / ".seeds" / f"{study}.yaml"
    override.write_text(yaml.safe_dump({"study": {**(base.get("study") or {}), "name": study, "seed": seed},
                                        "synthetic": {**(base.get("synthetic") or {}), "seed": seed}}))
    findings = wd / "results" / study / "tables/findings.csv"
    if findings.is_file():
        print(f"seed {seed}: already built ({findings})", flush=True)
        return findings, 0.0
    t0 = time.time()
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(ROOT / "profiles/local"), "-s", str(ROOT / "Snakefile"),
           "--directory", str(wd), "--cores", str(jobs),
           "--configfile", *[str(p.resolve()) for p in configfiles], str(override)]
    print(f"seed {seed}: {' '.join(cmd)}", flush=True)
    (wd / "logs" / study).mkdir(parents=True, exist_ok=True)
    with open(wd / "logs" / study / "snakemake.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    took = time.time() - t0
    if rc != 0:
        raise SystemExit(f"seed {seed}: snakemake failed (exit {rc}); see {wd / 'logs' / study / 'snakemake.log'}")
    if not findings.is_file():
        raise SystemExit(f"seed {seed}: the run ended but wrote no {findings}")
    print(f"seed {seed}: {took / 60:.1f} min, results in {wd / 'results' / study}", flush=True)
    return findings, took


def matrix(tables: dict[int, pl.DataFrame]) -> tuple[str, bool]:
    seeds = sorted(tables)
    claims = tables[seeds[0]]["claim"].to_list()
    lines = ["| claim | statement | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for c in claims:
        row = [tables[s].filter(pl.col("claim") == c).row(0, named=True) for s in seeds]
        cells = [f"{SHORT.get(r['verdict'], r['verdict'])} ({r['value']:+.1f})" if r["value"] is not None
                 else SHORT.get(r["verdict"], r["verdict"]) for r in row]
        lines.append(f"| {c} | {row[0]['statement']} | " + " | ".join(cells) + " |")
    ok = True
    holds = []
    for s in seeds:
        t = tables[s].filter(pl.col("claim").str.starts_with("F"))  # the paper's claims; R1 is beyond the paper
        n = int((t["verdict"] == "holds").sum())
        req = all(t.filter(pl.col("claim") == c)["verdict"].item() == "holds" for c in REQUIRED)
        holds.append(f"{n}/{t.height}" + ("" if req else " (a required claim fails)"))
        ok &= n >= MIN_HOLD and req
    lines.append("| **holds** | | " + " | ".join(holds) + " |")
    return "\n".join(lines), ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="number of seeds: 0 .. n-1")
    ap.add_argument("--seeds", type=int, nargs="*", help="explicit seeds instead of 0 .. n-1")
    ap.add_argument("--workdir", type=Path, default=ROOT, help="where results/<study>-seed<k>/ go (default: the checkout)")
    ap.add_argument("--configfile", type=Path, nargs="+", default=[ROOT / "config/config.yaml"])
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    seeds = a.seeds if a.seeds else list(range(a.n))
    tables, times = {}, {}
    for s in seeds:
        path, took = run_seed(s, a.workdir, a.configfile, a.jobs)
        tables[s], times[s] = pl.read_csv(path), took
    text, ok = matrix(tables)
    print(text)
    print("wall time per seed (min): " + ", ".join(f"seed {s} {t / 60:.1f}" for s, t in times.items()))
    print(f"robustness rule (>= {MIN_HOLD} of 14 hold and {', '.join(REQUIRED)} hold on every seed): "
          + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
