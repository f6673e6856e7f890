"""Does the SFT model write true steps? Share of picture statements right, and the held-out SFT loss.

    python benchmarks/trace_steps.py results/embedded sft-eureka sft-s1.1-r1 sft-s1-gemini base rl

For each arm: the statements its evaluation answers make about the picture (objects, counts, bar heights;
synergy.data.trace_check), how many per answer, the share that is true, and for SFT arms the held-out
loss per token of each epoch from its training log. The folder is a study's results folder (the one that
holds eval/, data/bench/ and train_logs/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

from synergy.data.trace_check import SceneFacts, check_steps


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    root, arms = Path(argv[0]), argv[1:]
    scenes = {}
    for bench in sorted((root / "data/bench").glob("*.parquet")):
        for r in pl.read_parquet(bench, columns=["bench", "id", "meta"]).iter_rows(named=True):
            scenes[(r["bench"], r["id"])] = SceneFacts.parse(json.loads(r["meta"])["scene"])
    print("| arm | answers | statements per answer | true | held-out loss per token by epoch |")
    print("|---|---|---|---|---|")
    for arm in arms:
        found = true = answers = 0
        for path in sorted((root / "eval" / arm).glob("*.parquet")):
            for r in pl.read_parquet(path, columns=["bench", "id", "response"]).iter_rows(named=True):
                f, t = check_steps(r["response"] or "", scenes[(r["bench"], r["id"])])
                found, true, answers = found + f, true + t, answers + 1
        log = root / "train_logs" / f"{arm}.parquet"
        losses = ""
        if log.exists():
            df = pl.read_parquet(log)
            if "val_loss" in df.columns:
                losses = ", ".join(f"{v:.2f}" for v in df["val_loss"].drop_nulls().to_list())
        share = f"{100 * true / found:.1f} %" if found else "–"
        print(f"| {arm} | {answers} | {found / max(answers, 1):.1f} | {share} | {losses or '–'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
