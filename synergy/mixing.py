"""Data mixing of paper §3.2: the RL arm's own correct answers plus long-CoT traces where it fails.

The paper samples 8 responses per Eureka-Distill question with the RL model, keeps the correct
ones (230k), adds the long-CoT trace of every question whose pass rate is 0 (≈13k, 243k in all),
and trains on the mix for 2 epochs with the §2.1 SFT settings. Here:

* ``sample_and_grade`` (the one grader) samples ``mixing.samples_per_question`` answers per
  question of the arm's train set with the source arm (the RL arm), with the reasoning instruction
  it was trained with and ``mixing.sampling`` (paper silent: the embedded study uses the GRPO
  rollout settings, T 1.0);
* every correct sample becomes one SFT row (the question with the sample as its response; id
  ``<id>#rl<k>``); a question with no correct sample contributes its trace (id ``<id>#trace``);
  each row's ``meta`` gets ``mix_origin`` = ``rl_sample`` or ``trace``;
* the composition (questions, solved, rows by origin) is returned, written next to the set as
  JSON, and logged by the training rule.

Choice: duplicates among the correct samples are kept (the paper counts 230k of 272k possible,
so it kept repeats too). The starting model of the SFT round is the arm's ``init`` (default the
base model; the paper reads as a fresh SFT round).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence

import polars as pl

from synergy.data.schema import DataError

log = logging.getLogger("synergy.mixing")

ORIGINS = ("rl_sample", "trace")


def mix_rows(rows: Sequence[Mapping], samples: pl.DataFrame) -> tuple[list[dict], dict]:
    """The mixed SFT rows and their composition, from the train rows and the source arm's graded samples."""
    need = {"id", "sample", "response", "correct"}
    if need - set(samples.columns):
        raise ValueError(f"samples frame lacks columns {sorted(need - set(samples.columns))}")
    by_id: dict[str, list[str]] = {}
    for r in samples.sort("id", "sample").iter_rows(named=True):
        by_id.setdefault(r["id"], [])
        if r["correct"]:
            by_id[r["id"]].append(r["response"])
    out: list[dict] = []
    missing = [row["id"] for row in rows if row["id"] not in by_id]
    if missing:
        raise DataError(f"{len(missing)} questions have no samples from the source arm, e.g. id={missing[0]!r}")
    solved = 0
    for row in rows:
        correct = by_id[row["id"]]
        meta = json.loads(row.get("meta") or "{}")
        if correct:
            solved += 1
            for k, text in enumerate(correct):
                out.append({**row, "id": f"{row['id']}#rl{k}", "response": text,
                            "meta": json.dumps({**meta, "mix_origin": "rl_sample"}, sort_keys=True)})
        else:
            trace = row.get("response")
            if not isinstance(trace, str) or not trace.strip():
                raise DataError(f"row id={row['id']!r}: never solved by the source arm and has no trace to add")
            out.append({**row, "id": f"{row['id']}#trace",
                        "meta": json.dumps({**meta, "mix_origin": "trace"}, sort_keys=True)})
    counts = Counter(json.loads(r["meta"])["mix_origin"] for r in out)
    composition = {"questions": len(rows), "solved_by_source": solved, "never_solved": len(rows) - solved,
                   "samples_per_question": int(samples.group_by("id").len()["len"].max() or 0),
                   "rows": len(out), **{f"rows_{o}": counts.get(o, 0) for o in ORIGINS}}
    log.info("mixing set: %d rows = %d correct RL samples + %d traces (%d of %d questions solved at least once)",
             composition["rows"], composition["rows_rl_sample"], composition["rows_trace"], solved, len(rows))
    return out, composition


def composition_by_origin(rows: Sequence[Mapping]) -> dict[str, int]:
    """Rows by ``meta.mix_origin`` (``other`` when absent): the composition a training log reports."""
    counts: Counter = Counter()
    for r in rows:
        try:
            counts[json.loads(r.get("meta") or "{}").get("mix_origin", "other")] += 1
        except ValueError:
            counts["other"] += 1
    return dict(counts)
