"""Sample n answers per question from a model and grade them with the one grader.

Serves difficulty estimation (base model, n = 16; paper §2.3) and evaluation (every arm, k = 4;
paper §2.4). The raw text of every sample is kept, so re-grading never needs re-generation.

The generation backend is ``difficulty.backend`` / ``evaluation.backend``: ``hf`` (transformers,
the default) or ``vllm`` (GPU only; ``synergy.generate.vllm``), chosen through
``synergy.generate.get_backend``. Both return the same ``Completion``s, so the graded table has
the same schema either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import polars as pl

from synergy.data.schema import validate_rows
from synergy.generate import SamplingConfig, generate, get_backend
from synergy.grading import Grader, grade_row
from synergy.prompts import build_prompt

log = logging.getLogger("synergy.sampling")

SAMPLE_SCHEMA = {
    "bench": pl.String, "id": pl.String, "sample": pl.Int32, "response": pl.String, "num_tokens": pl.Int32,
    "truncated": pl.Boolean, "extracted": pl.String, "correct": pl.Boolean, "format_ok": pl.Boolean,
    "status": pl.String,
}


def sample_and_grade(model, processor, rows: Sequence[Mapping], cfg: SamplingConfig, *, reasoning: bool,
                     image_position: str, grader: Grader, path: str | None = None,
                     backend: str = "hf") -> pl.DataFrame:
    """``cfg.n`` graded samples for every row, one output row per sample (see SAMPLE_SCHEMA).

    ``model``/``processor`` come from the ``backend``'s ``load`` (``get_backend(backend).load``).
    """
    validate_rows(rows, path)  # bad rows fail here, naming the row id and the file
    prompts = [build_prompt(r, reasoning, image_position, path) for r in rows]
    start = time.monotonic()
    before = dict(grader.stats)  # a grader shared by several files (sample_files) logs this file's counts

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - start, 1e-9)
        log.info("generated %d/%d prompts (%.1f prompts/s)", done, total, rate)

    sample = generate if backend == "hf" else get_backend(backend).generate
    completions = sample(model, processor, prompts, cfg, progress=progress)
    records = []
    for row, outs in zip(rows, completions):
        for k, c in enumerate(outs):
            g = grade_row(grader, c.text, row)
            records.append({"bench": row["bench"], "id": row["id"], "sample": k, "response": c.text,
                            "num_tokens": c.num_tokens, "truncated": c.truncated, "extracted": g.extracted,
                            "correct": g.correct, "format_ok": g.format_ok, "status": g.status})
    df = pl.DataFrame(records, schema=SAMPLE_SCHEMA)
    log.info("%d samples in %.1f s: accuracy %.3f, format %.3f, truncated %d, grader %s", df.height,
             time.monotonic() - start, df["correct"].mean(), df["format_ok"].mean(), int(df["truncated"].sum()),
             {k: v - before.get(k, 0) for k, v in grader.stats.items()})
    failed = {s: int((df["status"] == s).sum()) for s in ("timeout", "error")}
    if any(failed.values()):
        log.warning("%d of %d samples%s could not be graded (%d timeouts, %d errors): they count as wrong and keep "
                    "status timeout/error; the raw text is kept, so `python scripts/regrade.py --timeout-s N` can "
                    "grade them again without generating", sum(failed.values()), df.height,
                    f" of {path}" if path else "", failed["timeout"], failed["error"])
    return df


def sample_file(model_dir: str, bench_path: str, cfg: SamplingConfig, *, reasoning: bool, image_position: str,
                timeout_s: float, shard: tuple[int, int] = (0, 1), backend: str = "hf", vllm=None,
                max_pixels: int | None = None) -> pl.DataFrame:
    """Load the model in ``model_dir`` with ``backend`` and sample + grade every question of a canonical parquet file.

    ``shard = (index, count)``: only the questions of that shard (synergy/shards.py); (0, 1) is all of them.
    ``backend``: ``hf`` (transformers ``load_model``) or ``vllm`` (a ``vllm.LLM`` built from the
    ``VLLMConfig`` ``vllm``); either backend caps images at ``max_pixels`` = study config
    ``prompt.max_pixels`` (``synergy.models.cap_pixels``), as training does. A missing vLLM raises
    before anything is loaded, naming the install.
    """
    return sample_files(model_dir, [bench_path], [cfg], reasoning=reasoning, image_position=image_position,
                        timeout_s=timeout_s, shard=shard, backend=backend, vllm=vllm, max_pixels=max_pixels)[0]


def sample_files(model_dir: str, bench_paths: Sequence[str], cfgs: Sequence[SamplingConfig], *, reasoning: bool,
                 image_position: str, timeout_s: float, shard: tuple[int, int] = (0, 1), backend: str = "hf",
                 vllm=None, max_pixels: int | None = None) -> list[pl.DataFrame]:
    """``sample_file`` for several benchmark files, each with its own ``SamplingConfig`` (seed), loading the model once.

    Each file's table equals what ``sample_file`` gives for it alone (evaluation.per_job: arm runs one job per arm).
    """
    from synergy.io import read_rows
    from synergy.shards import select_shard

    if len(bench_paths) != len(cfgs):
        raise ValueError(f"{len(bench_paths)} benchmark files but {len(cfgs)} sampling configs")
    chosen = get_backend(backend)
    selected = []
    for bench_path in bench_paths:
        all_rows = read_rows(bench_path)
        rows = select_shard(all_rows, *shard)
        if not rows and all_rows:
            raise ValueError(f"shard {shard[0]} of {shard[1]} of {bench_path} holds no question: the benchmark has only "
                             f"{len(all_rows)}; lower the config's sharding count to at most that")
        if shard[1] > 1:
            log.info("shard %d of %d: %d questions of %s", shard[0], shard[1], len(rows), bench_path)
        selected.append(rows)
    model, processor = chosen.load(model_dir, vllm=vllm, max_pixels=max_pixels)
    out = []
    with Grader(timeout_s) as grader:
        for bench_path, rows, cfg in zip(bench_paths, selected, cfgs):
            if len(bench_paths) > 1:
                log.info("benchmark %s: %d questions", bench_path, len(rows))
            out.append(sample_and_grade(model, processor, rows, cfg, reasoning=reasoning,
                                        image_position=image_position, grader=grader, path=bench_path,
                                        backend=chosen.name))
    return out
