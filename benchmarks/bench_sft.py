"""SFT throughput (synergy.train.sft_trainer) on the tiny Qwen2.5-VL: label tokens per second.

Builds the tiny model at the default ``TinyModelConfig`` (random weights, tokenizer trained on the
suite), then runs one epoch of ``train_sft`` over ``--rows`` long-CoT rows of each style
(multimodal Eureka-style traces, and text-only s1.1-style traces) at batch 16, and prints label
(response) tokens per second and seconds per optimiser step, excluding the first (warm-up) step,
for each micro-batch size given (the batch's rows are cut into micro-batches by length, so smaller
micro-batches pad less; the optimiser step is the same).

    python benchmarks/bench_sft.py [--threads 2] [--rows 64] [--micro 16 4]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import polars as pl
import torch

from synergy.config import SFTSettings
from synergy.data.suite import build_train_set
from synergy.data.synthetic import TEMPLATES
from synergy.models import save_model
from synergy.pretrain import tokenizer_corpus
from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer
from synergy.train.sft_trainer import train_sft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--micro", type=int, nargs="+", default=[16], help="micro-batch sizes to time (batch 16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    kw = dict(seed=0, image_size=112, max_objects=9, exclude=set())
    sets = {"eureka (image)": build_train_set("eureka", args.rows, dict.fromkeys(TEMPLATES, 1.0), style="reflective_short",
                                              modality="image", **kw),
            "s1.1-r1 (text)": build_train_set("s1.1-r1", args.rows, dict.fromkeys(TEMPLATES, 1.0), style="reflective",
                                              modality="text", **kw)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = train_tokenizer(tokenizer_corpus([r for rows in sets.values() for r in rows]), 1024)
        save_model(build_tiny_model(TinyModelConfig(), tok), build_processor(tok, 112), tmp / "init")
        print(f"threads={args.threads}, batch 16, {args.rows} rows per set, default TinyModelConfig")
        print(f"{'set':16} {'micro':>5} {'steps':>5} {'s/step':>7} {'label tok/s':>11}")
        for name, rows in sets.items():
            for micro in args.micro:
                cfg = SFTSettings(learning_rate=5e-4, batch_size=16, micro_batch_size=micro, epochs=1, val_fraction=0.0,
                                  select="last", save_every_steps=10_000)
                out = tmp / f"{name.split()[0]}-{micro}"
                train_sft(tmp / "init", rows, out, log_path=tmp / "log.parquet", state_dir=tmp / f"state-{micro}", cfg=cfg)
                log = pl.read_parquet(tmp / "log.parquet").filter(pl.col("loss").is_not_null()).slice(1)
                print(f"{name:16} {micro:5d} {log.height:5d} {log['seconds'].mean():7.2f} "
                      f"{log['tokens'].sum() / log['seconds'].sum():11.0f}")


if __name__ == "__main__":
    main()
