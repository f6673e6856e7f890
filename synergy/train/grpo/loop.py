"""The GRPO loop (paper §2.2), one step as verl's ``RayPPOTrainer`` with ``adv_estimator=grpo``.

``_train_grpo`` reads as the algorithm: for each step, (1) take this step's questions, (2) sample G
responses per question, (3) reward them and normalise the rewards within each group, (4) compute
the old and reference log-probs, (5) run the clipped updates, then log and save. Setup, the
rollouts, the batch, the updates and the metrics live in the modules beside this one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from synergy.config import GRPOSettings
from synergy.data.schema import DataError, validate_rows
from synergy.grading import Grader
from synergy.models import save_model
from synergy.train.core import MetricsLog, check_grading, explain_oom
from synergy.train.grpo.data import process_rows, step_row_indices, step_seed
from synergy.train.grpo.hybrid import step_plan
from synergy.train.grpo.metrics import HYBRID_COLUMNS, METRIC_COLUMNS, last_steps_mean, rollout_metrics
from synergy.train.grpo.rollouts import collect_rollouts
from synergy.train.grpo.run import Run, checkpoint_dtype, rollout_engine, setup_run
from synergy.train.grpo.update import micro_plan, score, update
from synergy.train.losses import group_advantages
from synergy.train.zero import gathered

log = logging.getLogger("synergy.train")

GRADER_COUNTS = ("timeouts", "errors", "graded")


def train_grpo(init_dir, rows: Sequence[Mapping], out_dir, *, log_path, state_dir, cfg: GRPOSettings,
               image_position: str = "after_text", seed: int = 0, ref_dir=None, grading_timeout_s: float = 5.0,
               grading_max_failure_share: float = 0.5, stop_after_steps: int | None = None,
               zero_pass: set | None = None, vllm=None, max_pixels: int | None = None) -> dict:
    """Train with GRPO (see ``_train_grpo``); rows are validated first (``DataError`` naming the row).

    ``max_pixels`` (study config ``prompt.max_pixels``) caps every image in the rollouts (hf and
    vLLM: the engine takes the processor's bound) and the log-prob passes, as in evaluation.

    Out of memory anywhere in the run raises ``TrainingOutOfMemory`` naming the arm (the name of
    ``out_dir``), the batch sizes and the saved state a rerun resumes from. A step in which more than
    ``grading_max_failure_share`` of the rollouts could not be graded (timeouts, errors) raises
    ``GradingStorm`` before its update; below that share they count as wrong and are logged, and
    every step's counts are the ``grader_timeouts`` / ``grader_errors`` columns.
    """
    rows = list(rows)
    validate_rows(rows)
    sizes = {"prompts_per_step": cfg.prompts_per_step, "mini_batch_size": cfg.mini_batch_size,
             "num_generations": cfg.num_generations, "micro_batch_size": cfg.micro_batch_size,
             "max_new_tokens": cfg.max_new_tokens}
    with explain_oom(Path(out_dir).name, sizes, state_dir):
        return _train_grpo(init_dir, rows, out_dir, log_path=log_path, state_dir=state_dir, cfg=cfg,
                           image_position=image_position, seed=seed, ref_dir=ref_dir,
                           grading_timeout_s=grading_timeout_s, grading_max_failure_share=grading_max_failure_share,
                           stop_after_steps=stop_after_steps, zero_pass=zero_pass, vllm=vllm, max_pixels=max_pixels)


def _check_hybrid_rows(cfg: GRPOSettings, rows: list, zero_pass: set | None) -> None:
    """A hybrid arm needs every row's external trace, and the zero-pass ids when they are read offline."""
    missing = [r.get("id") for r in rows if not isinstance(r.get("response"), str) or not r["response"].strip()]
    if missing:
        raise DataError(f"hybrid {cfg.hybrid}: {len(missing)} of {len(rows)} rows have no external trace "
                        f"(response), e.g. id={missing[0]!r}")
    if cfg.zero_pass == "offline" and zero_pass is None:
        raise ValueError("zero_pass: offline needs the set of zero-pass ids (zero_pass_ids of the base samples)")
    if zero_pass is not None:
        log.info("offline zero-pass: %d of %d questions", sum(r["id"] in zero_pass for r in rows), len(rows))


def _train_grpo(init_dir, rows: Sequence[Mapping], out_dir, *, log_path, state_dir, cfg: GRPOSettings,
                image_position: str = "after_text", seed: int = 0, ref_dir=None, grading_timeout_s: float = 5.0,
                grading_max_failure_share: float = 0.5, stop_after_steps: int | None = None,
                zero_pass: set | None = None, vllm=None, max_pixels: int | None = None) -> dict:
    """Train the model in ``init_dir`` with GRPO on ``rows`` for ``cfg.steps`` steps; save it to ``out_dir``.

    Writes the per-step metrics (``METRIC_COLUMNS``) to ``log_path`` (parquet) and
    ``out_dir/training_summary.json``; keeps full training states in ``state_dir`` while running
    (every ``cfg.save_every_steps`` steps and at the end) and deletes it when done. A rerun resumes
    from the newest state of the same run (same settings, init, reference, rows, seed and image
    position). The reference model (``ref_dir``, default ``init_dir``) is loaded only when
    ``cfg.kl_coef > 0``. ``stop_after_steps`` stops after that many steps (counted from step 0)
    as if the job had been killed: nothing is written but the states saved so far, and
    ``{"completed": False, "step": ...}`` is returned. Raises ``TrainingDiverged`` on a NaN or
    infinite loss or gradient norm (the saved states stay). Returns the summary.

    Hybrid arms (``cfg.hybrid`` interleaved / progressive, paper §3.1) need every row's external
    trace (``response``); with ``cfg.zero_pass == "offline"`` ``zero_pass`` is the set of row ids
    the base model never solved (``zero_pass_ids``). Their metrics add ``HYBRID_COLUMNS``.

    ``cfg.rollout_backend == "vllm"`` samples with an in-process vLLM engine built from ``init_dir``
    with the ``VLLMConfig`` ``vllm`` (defaults when None) and refreshed with the policy's weights
    after every step (and once after resuming).
    """
    t_start = time.monotonic()
    rows = list(rows)
    hybrid = cfg.hybrid != "none"
    if hybrid:
        _check_hybrid_rows(cfg, rows, zero_pass)
    if cfg.rollout_backend == "vllm":
        from synergy.generate.vllm import import_vllm

        import_vllm()  # a missing vLLM fails here, naming the install, before any model is loaded
    columns = METRIC_COLUMNS + (HYBRID_COLUMNS if hybrid else ())
    run, processor, restored = setup_run(init_dir, rows, cfg, state_dir=state_dir, seed=seed, ref_dir=ref_dir,
                                         image_position=image_position, max_pixels=max_pixels)
    acc = run.accelerator
    start = int(restored["step"]) if restored else 0
    metrics = MetricsLog(log_path, restored.get("metrics", []) if restored else [])
    P, mbs, world, rank = cfg.prompts_per_step, cfg.mini_batch_size, acc.num_processes, acc.process_index
    engine = rollout_engine(run, processor, init_dir, vllm) if cfg.rollout_backend == "vllm" else None
    if engine is not None and start > 0:
        engine.load_weights(run.policy)  # the engine holds init_dir's weights; the restored policy is newer
    log.info("GRPO: %d rows, steps %d..%d, %d prompts x G=%d per step, %d updates of %d prompts, micro-batch %d "
             "sequences, lr %g, kl_coef %g, %d process(es)", len(rows), start + 1, cfg.steps, P, cfg.num_generations,
             len(run.updates), mbs, cfg.micro_batch_size, cfg.learning_rate, cfg.kl_coef, world)

    with Grader(timeout_s=grading_timeout_s) as grader:
        for step in range(start, cfg.steps):
            t0 = time.monotonic()
            # 1. this step's questions: this process's share of each mini-batch
            mine = process_rows(step_row_indices(len(rows), P, seed, step), mbs, len(run.updates), rank, world)
            step_rows = [rows[i] for i in mine]
            plan = step_plan(cfg, step, step_rows, zero_pass) if hybrid else None
            # 2. G responses per question, graded and rewarded (hybrids: zero-pass questions routed)
            before = {k: grader.stats[k] for k in GRADER_COUNTS}
            with torch.no_grad(), acc.autocast():
                ro = collect_rollouts(run.policy, processor, step_rows, cfg, step_seed=step_seed(seed, step, rank),
                                      grader=grader, image_position=image_position, hybrid=plan,
                                      sampler=engine.sample if engine is not None else None)
            n_timeouts, n_errors, n_graded = run.allsum([grader.stats[k] - before[k] for k in GRADER_COUNTS])
            check_grading(Path(out_dir).name, step + 1, {"timeouts": int(n_timeouts), "errors": int(n_errors)},
                          int(n_graded), grading_max_failure_share, state_dir)
            # 3. advantages: rewards normalised within each group of G
            advantages = group_advantages(ro.rewards).reshape(-1)
            t1 = time.monotonic()
            # 4. old (and reference) log-probs, in the micro-batches of the updates
            micro = micro_plan(run, ro)
            old, ref, entropy = score(run, ro, micro)
            t2 = time.monotonic()
            # 5. clipped policy updates
            upd = update(run, ro, advantages, old, ref, step + 1, micro)
            if engine is not None and step + 1 < cfg.steps:
                engine.load_weights(run.policy)  # the next step samples from the updated policy
            t3 = time.monotonic()
            row = {"step": step + 1, **rollout_metrics(run, ro, entropy, old, ref), **upd, "seconds": t3 - t0,
                   "time_generate": t1 - t0, "time_logprobs": t2 - t1, "time_update": t3 - t2,
                   "grader_timeouts": int(n_timeouts), "grader_errors": int(n_errors)}
            metrics.append({k: row[k] for k in columns})
            done = step + 1
            if done % cfg.save_every_steps == 0 and done < cfg.steps:
                run.checkpointer.save({"step": done, "metrics": metrics.rows})
            if stop_after_steps is not None and stop_after_steps <= done < cfg.steps:
                log.warning("stopping after step %d as asked (stop_after_steps); saved states stay in %s", done,
                            state_dir)
                return {"completed": False, "step": done}
        grader_stats = dict(grader.stats)

    if start < cfg.steps:
        run.checkpointer.save({"step": cfg.steps, "metrics": metrics.rows})
    summary = _summary(run, metrics, init_dir, ref_dir, rows, start, seed, grader_stats, time.monotonic() - t_start)
    _save(run, processor, metrics, init_dir, out_dir, summary)
    log.info("GRPO done: %d steps in %.1f s (this run); model -> %s", cfg.steps, summary["seconds_this_run"], out_dir)
    return summary


def _summary(run: Run, metrics: MetricsLog, init_dir, ref_dir, rows: list, start: int, seed: int,
             grader_stats: dict, seconds: float) -> dict:
    """``training_summary.json``: what ran, from what, and the last steps' means."""
    cfg = run.cfg
    return {
        "completed": True,
        "steps": cfg.steps,
        "updates": cfg.steps * len(run.updates),
        "resumed_from_step": start,
        "num_rows": len(rows),
        "prompts_per_step": cfg.prompts_per_step,
        "num_generations": cfg.num_generations,
        "init_dir": str(init_dir),
        "reference_model": str(ref_dir if ref_dir is not None else init_dir) if run.ref is not None else None,
        "seed": seed,
        "fingerprint": run.checkpointer.fingerprint,
        "seconds_this_run": seconds,
        "training_seconds": sum(r["seconds"] for r in metrics.rows),
        "last_steps_mean": last_steps_mean(metrics.rows),
        "grader": grader_stats,
        "settings": cfg.to_dict(),
    }


def _save(run: Run, processor, metrics: MetricsLog, init_dir, out_dir, summary: dict) -> None:
    """The model (in the init checkpoint's dtype, summary inside) and the metrics table; then the states go.

    Under ZeRO-3 every rank takes part in gathering the weights (``zero.gathered``); rank 0 writes.
    The weights are copied in the save dtype, so the policy itself is never changed.
    """
    acc = run.accelerator
    save_dtype = checkpoint_dtype(init_dir)
    with gathered(run.policy, acc):
        if acc.is_main_process:
            state = {k: v.detach().to(device="cpu", dtype=save_dtype) if v.is_floating_point() else v.detach().cpu()
                     for k, v in run.policy.state_dict().items()}
            # the summary goes into the model folder before its rename: the folder never appears without it
            save_model(run.policy, processor, out_dir, state_dict=state,
                       extra_files={"training_summary.json": json.dumps(summary, indent=2, default=str) + "\n"})
            metrics.write()
    acc.wait_for_everyone()
    run.checkpointer.clear()
