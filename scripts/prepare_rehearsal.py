"""Inputs of the rehearsal of the paper study (config/rehearsal.yaml; docs/paper-study.md "Rehearsal").

Writes, under ``resources/rehearsal/`` of the working directory (or the folder given):

* ``data/<set>/``: a few rows of each of the paper's datasets (the five benchmarks, s1K, s1K-1.1,
  Eureka-Distill) in its published layout (tests/fixtures/hf_datasets.py), read through ``local_path``
  by the same loaders as the real downloads;
* ``model/``: a tiny random Qwen2.5-VL saved as a Hugging Face folder (synergy.models), the base model
  and the judge of the rehearsal.

    python scripts/prepare_rehearsal.py [DIR]      # default resources/rehearsal
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures import hf_datasets as F  # noqa: E402

MODEL = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128, vision_depth=2,
             vision_hidden_size=64, vision_heads=4, vision_intermediate_size=128, image_size=56, seed=0)


def corpus(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [f"How many {rng.choice(['red', 'blue'])} shapes? The answer is \\boxed{{{rng.randint(0, 9)}}}."
             for _ in range(n)]
    lines.append("Please reason step by step within <think> </think> tags, and put your final answer within \\boxed{}.")
    return lines


def write_data(root: Path) -> None:
    F.write_mathvision(root / "mathvision")
    F.write_mathverse(root / "mathverse")
    F.write_mathvista(root / "mathvista")
    F.write_mmmu(root / "mmmu")
    F.write_mmstar(root / "mmstar")
    F.write_s1k(root / "s1k")
    F.write_s1k(root / "s1k11", version="1.1")
    F.write_eureka_parquet(root / "eureka")


def write_model(out: Path) -> None:
    from synergy.models import save_model
    from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer

    cfg = TinyModelConfig(**MODEL)
    tokenizer = train_tokenizer(corpus(), vocab_size=512)
    save_model(build_tiny_model(cfg, tokenizer), build_processor(tokenizer, cfg.image_size), out)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "resources/rehearsal")
    if (root / "model" / "config.json").is_file():
        print(f"{root}: already prepared")
        return 0
    write_data(root / "data")
    write_model(root / "model")
    print(f"{root}: datasets in data/, tiny Qwen2.5-VL in model/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
