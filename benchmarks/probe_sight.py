"""Does a model look at the picture? Per template: the gold short answer's loss with its own picture and with another's.

    python benchmarks/probe_sight.py results/embedded [arm] [--per-template N]

For every benchmark question with a picture (up to N per template, default 40) the model scores the gold
answer in the short style of the base model ("The answer is X.", no reasoning instruction, multiple choice
answered by its letter, as the benchmark rows are graded) teacher-forced after the exact evaluation prompt:
once with the question's own picture and once with the picture of another question of the same template.
It prints, per template, the mean loss of the answer (nats per answer, summed over its tokens) in both cases
and the gap between them: what the picture is worth to the model. A model that reads the picture has a clear
gap; a gap near 0 means the answer does not depend on the picture (docs/embedded-study.md §8). ``arm``
defaults to ``base`` (the folder ``models/<arm>`` of the study).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import polars as pl
import torch
import yaml

from synergy.models import load_model
from synergy.prompts import build_prompt
from synergy.train.sft import collate_sft, row_nll


def answer_loss(model, processor, rows: list[dict], responses: list[str], image_position: str) -> list[float]:
    """Summed loss of each response (teacher-forced, evaluation prompt without the reasoning instruction)."""
    batch = collate_sft(processor, [build_prompt(r, False, image_position) for r in rows], responses)
    with torch.no_grad():
        return row_nll(model, batch).tolist()


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    per_template = int(argv[argv.index("--per-template") + 1]) if "--per-template" in argv else 40
    if "--per-template" in argv:
        args.remove(str(per_template))
    if not args:
        print(__doc__)
        return 2
    root, arm = Path(args[0]), (args[1] if len(args) > 1 else "base")
    model, processor = load_model(root / "models" / arm)
    record = root / "study.yaml"
    prompt = (yaml.safe_load(record.read_text()) or {}).get("prompt", {}) if record.exists() else {}
    position = prompt.get("image_position", "after_text")
    by_template: dict[str, list[dict]] = defaultdict(list)
    for path in sorted((root / "data/bench").glob("*.parquet")):
        for r in pl.read_parquet(path).iter_rows(named=True):
            if r["images"]:
                by_template[json.loads(r["meta"])["template"]].append(r)
    print(f"model {root / 'models' / arm}: loss of the gold short answer (nats per answer)")
    print("| template | questions | own picture | another picture | gap |")
    print("|---|---|---|---|---|")
    gaps = []
    for template, rows in sorted(by_template.items()):
        rows = rows[:per_template]
        if len(rows) < 2:
            continue
        others = rows[1:] + rows[:1]  # each question gets the next one's picture
        swapped = [{**r, "images": o["images"]} for r, o in zip(rows, others)]
        gold = [f"The answer is {r['answer']}." for r in rows]
        own = sum(answer_loss(model, processor, rows, gold, position)) / len(rows)
        other = sum(answer_loss(model, processor, swapped, gold, position)) / len(rows)
        gaps.append(other - own)
        print(f"| {template} | {len(rows)} | {own:.3f} | {other:.3f} | {other - own:+.3f} |")
    print(f"mean gap over templates: {sum(gaps) / max(1, len(gaps)):+.3f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
