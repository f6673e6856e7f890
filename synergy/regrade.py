"""Re-grade kept samples without generating them again (docs/reliability.md, "Re-grading").

Every sampling stage (difficulty, the RL pass rates, evaluation; paper §2.3-2.4) keeps the raw
text of every sample, so a grader fix or a longer per-item time limit never needs the model
again: this module grades the kept ``response`` of each sample with the one grader
(``synergy.grading``) against its question and rewrites the grade columns ``extracted``,
``correct``, ``format_ok`` and ``status`` in place (atomically; every other column and the row
order stay). With ``only_failed`` just the samples whose status is ``timeout`` or ``error`` are
graded again (the usual case after a grader-timeout storm).

Which question file goes with a samples file follows the path schema (README, "Path schema"), inside one study's folder ``results/{study}/``:

    eval/{arm}/{bench}.parquet                        -> data/bench/{bench}.parquet
    difficulty/{bench}.samples.parquet                -> data/bench/{bench}.parquet
    difficulty/train/{set}/{rollout}.samples.parquet  -> data/train/{set}.parquet
    difficulty/train/{set}.samples.parquet            -> data/train/{set}.parquet (older runs)

After re-grading, rerun Snakemake: the rewritten files are newer than the tables and levels built
from them, so exactly those are rebuilt (mtime trigger) and no sample is generated again.

    python scripts/regrade.py                        # every results/*/eval/*/*.parquet (every study)
    python scripts/regrade.py --only-failed --timeout-s 30 results/paper/difficulty/*.samples.parquet
    python scripts/regrade.py --dry-run              # report what would change, write nothing
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from synergy.data.schema import DataError, validate_rows
from synergy.grading import Grader, grade_row
from synergy.io import read_rows, write_parquet

log = logging.getLogger("synergy.regrade")

GRADE_COLUMNS = ("extracted", "correct", "format_ok", "status")
FAILED_STATUSES = ("timeout", "error")


def questions_path(samples_path: str | Path) -> Path:
    """The canonical question file a samples file was generated from (path schema above)."""
    p = Path(samples_path)
    parts = p.parts
    for k in range(len(parts) - 1, -1, -1):
        if parts[k] == "eval" and k + 2 == len(parts) - 1:  # .../eval/{arm}/{bench}.parquet
            return Path(*parts[:k], "data", "bench", p.name)
        if parts[k] == "difficulty":
            stem = p.name.removesuffix(".samples.parquet")
            if stem == p.name:
                break
            if k + 3 == len(parts) - 1 and parts[k + 1] == "train":  # .../difficulty/train/{set}/{rollout}.samples...
                return Path(*parts[:k], "data", "train", f"{parts[k + 2]}.parquet")
            if k + 2 == len(parts) - 1 and parts[k + 1] == "train":  # .../difficulty/train/{set}.samples.parquet
                return Path(*parts[:k], "data", "train", f"{stem}.parquet")
            if k + 1 == len(parts) - 1:  # .../difficulty/{bench}.samples.parquet
                return Path(*parts[:k], "data", "bench", f"{stem}.parquet")
    raise ValueError(f"{samples_path}: not a samples file of the path schema (results/STUDY/eval/ARM/BENCH.parquet, "
                     "results/STUDY/difficulty/BENCH.samples.parquet or "
                     "results/STUDY/difficulty/train/SET/ROLLOUT.samples.parquet)")


def regrade_samples(samples: pl.DataFrame, questions: Sequence[Mapping], grader: Grader, *, only_failed: bool = False,
                    path: str | None = None) -> tuple[pl.DataFrame, dict]:
    """Grade ``samples`` again against ``questions``; return the new frame and a report of what changed.

    The report holds ``samples``, ``regraded`` (samples graded again), ``changed`` (samples whose
    grade changed), ``correct_before`` / ``correct_after`` and ``status_before`` / ``status_after``
    (counts by status). A sample whose question id is missing raises ``DataError`` naming it.
    """
    missing_cols = {"id", "response", *GRADE_COLUMNS} - set(samples.columns)
    if missing_cols:
        raise DataError(f"{path or 'samples'}: missing columns {sorted(missing_cols)}")
    by_id = {q["id"]: q for q in questions}
    rows = samples.select("id", "response", *GRADE_COLUMNS).to_dicts()
    out = {c: [] for c in GRADE_COLUMNS}
    regraded = changed = 0
    for row in rows:
        if row["id"] not in by_id:
            raise DataError(f"row id={row['id']!r} in {path or 'samples'}: no question with this id")
        new = {c: row[c] for c in GRADE_COLUMNS}
        if not only_failed or row["status"] in FAILED_STATUSES:
            g = grade_row(grader, row["response"] or "", by_id[row["id"]])
            new = {"extracted": g.extracted, "correct": g.correct, "format_ok": g.format_ok, "status": g.status}
            regraded += 1
            changed += any(new[c] != row[c] for c in GRADE_COLUMNS)
        for c in GRADE_COLUMNS:
            out[c].append(new[c])
    new_frame = samples.with_columns(pl.Series(c, out[c], dtype=samples.schema[c]) for c in GRADE_COLUMNS)
    report = {
        "samples": samples.height, "regraded": regraded, "changed": changed,
        "correct_before": int(samples["correct"].sum()), "correct_after": int(new_frame["correct"].sum()),
        "status_before": dict(Counter(samples["status"].to_list())),
        "status_after": dict(Counter(new_frame["status"].to_list())),
    }
    return new_frame, report


def regrade_file(samples_path: str | Path, grader: Grader, *, only_failed: bool = False, dry_run: bool = False,
                 questions: str | Path | None = None) -> dict:
    """Re-grade one samples file in place (atomic rewrite; nothing written with ``dry_run``); return the report."""
    samples_path = Path(samples_path)
    qpath = Path(questions) if questions is not None else questions_path(samples_path)
    rows = read_rows(qpath)
    validate_rows(rows, str(qpath))
    samples = pl.read_parquet(samples_path)
    new, report = regrade_samples(samples, rows, grader, only_failed=only_failed, path=str(samples_path))
    if report["changed"] and not dry_run:
        write_parquet(new.to_arrow(), samples_path)
    report["file"] = str(samples_path)
    report["written"] = bool(report["changed"] and not dry_run)
    log.info("%s: %d samples, %d graded again, %d changed; correct %d -> %d; status %s -> %s%s", samples_path,
             report["samples"], report["regraded"], report["changed"], report["correct_before"],
             report["correct_after"], report["status_before"], report["status_after"],
             "" if report["written"] else " (not written)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from synergy.config import GradingConfig
    from synergy.logs import setup_logging

    ap = argparse.ArgumentParser(description="Re-grade kept samples with the one grader, without generating again.")
    ap.add_argument("paths", nargs="*", help="samples files (default: every results/*/eval/*/*.parquet, all studies)")
    ap.add_argument("--timeout-s", type=float, default=GradingConfig().timeout_s, help="per-item grading limit")
    ap.add_argument("--only-failed", action="store_true", help="grade again only samples with status timeout/error")
    ap.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    ap.add_argument("--log", default=None, help="also write the log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    paths = args.paths or sorted(str(p) for p in Path("results").glob("*/eval/*/*.parquet"))
    if not paths:
        log.error("no samples files given and none under results/*/eval/")
        return 2
    totals = Counter()
    with Grader(timeout_s=args.timeout_s) as grader:
        for path in paths:
            rep = regrade_file(path, grader, only_failed=args.only_failed, dry_run=args.dry_run)
            totals.update({k: rep[k] for k in ("samples", "regraded", "changed")})
    log.info("re-graded %d files: %d samples, %d graded again, %d changed%s", len(paths), totals["samples"],
             totals["regraded"], totals["changed"], " (dry run: nothing written)" if args.dry_run else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
