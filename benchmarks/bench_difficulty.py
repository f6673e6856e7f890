"""Wall time of the difficulty stage (paper §2.3): n samples per question + grading, per benchmark.

Prints, per benchmark and in total: questions, samples, generated tokens, wall seconds split into
generation+grading, and throughput. Uses the built study (``results/<study.name>/``) and the study config.

    .venv/bin/python benchmarks/bench_difficulty.py [--config config/config.yaml] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from synergy.config import load_config_file
from synergy.generate import SamplingConfig
from synergy.grading import Grader
from synergy.io import read_rows
from synergy.models import load_model
from synergy.sampling import sample_and_grade
from synergy.workflow import BASE_MODEL_DIR, BENCH_PATH, derived_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="default: the study's base model, results/<study>/models/base")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    study = load_config_file(args.config)
    args.model = args.model or BASE_MODEL_DIR.format(study=study.name)
    d = study.difficulty
    t0 = time.monotonic()
    model, processor = load_model(args.model)
    load_s = time.monotonic() - t0
    print(f"model load {load_s:.1f} s; {d.num_samples} samples per question, T={d.sampling.temperature}, "
          f"threads={args.threads}")
    print(f"{'benchmark':18} {'questions':>9} {'samples':>8} {'tokens':>8} {'seconds':>8} {'samples/s':>10} {'tok/s':>8}")
    total = [0, 0, 0, 0.0]
    with Grader(study.grading.timeout_s) as grader:
        for bench in study.bench_names:
            rows = read_rows(BENCH_PATH.format(study=study.name, bench=bench))
            cfg = SamplingConfig(n=d.num_samples, seed=derived_seed(study.seed, "difficulty", bench),
                                 **d.sampling.to_dict())
            t = time.monotonic()
            df = sample_and_grade(model, processor, rows, cfg, reasoning=d.reasoning_instruction,
                                  image_position=study.prompt.image_position, grader=grader)
            dt = time.monotonic() - t
            tokens = int(df["num_tokens"].sum())
            print(f"{bench:18} {len(rows):9d} {df.height:8d} {tokens:8d} {dt:8.1f} {df.height / dt:10.1f} {tokens / dt:8.0f}")
            total = [total[0] + len(rows), total[1] + df.height, total[2] + tokens, total[3] + dt]
    print(f"{'total':18} {total[0]:9d} {total[1]:8d} {total[2]:8d} {total[3]:8.1f} {total[1] / total[3]:10.1f} "
          f"{total[2] / total[3]:8.0f}   (+ {load_s:.1f} s model load)")


if __name__ == "__main__":
    main()
