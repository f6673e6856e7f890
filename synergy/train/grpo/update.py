"""GRPO steps 4-5 (paper §2.2): old and reference log-probs, then the clipped policy updates (verl's loss).

``score`` computes the log-probs of the responses under the current policy ("old", no grad) and,
when ``kl_coef > 0``, under the frozen reference model, in the micro-batches the updates will use,
so the first update's ratio is exactly 1. With ``share_prompt`` each micro-batch computes each of its
prompts once (``shared``: one prompt forward, its key/value cache expanded to the continuations). They are recomputed by the trainer, never taken from the
sampler: with two updates per rollout batch the second one is off-policy, and sampler and trainer
numerics differ.

``update`` runs the step's ``prompts_per_step // mini_batch_size`` optimiser updates, each over the
sequences of ``mini_batch_size`` prompts in micro-batches of ``micro_batch_size`` sequences whose
losses (``losses.grpo_loss``: clipped ratio, dual clip, k3 KL, optional SFT term of a hybrid arm)
are normalised by the mini-batch's total trained tokens, so the accumulated gradient is verl's
token-mean over the mini-batch; then gradient clipping, AdamW and the lr schedule. No entropy bonus
(verl ``entropy_coeff`` 0). With several processes the normaliser is summed over processes and the
loss multiplied by the process count (data-parallel averaging).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from synergy.train.core import TrainingDiverged, check_finite
from synergy.train.grpo.batch import Rollouts, select
from synergy.train.grpo.metrics import mean
from synergy.train.grpo.run import Run
from synergy.train.grpo.shared import micro_logprobs
from synergy.train.losses import grpo_loss


def micro_plan(run: Run, ro: Rollouts) -> list[list[list[int]]]:
    """Per update, the sequence indices of each micro-batch.

    Sequences with no trained token (the idle rows of an SFT-routed group) are left out and the
    rest are cut into ``micro_batch_size`` chunks; an update with nothing to train keeps one row
    (zero loss) so that every process runs its synchronising backward. With DeepSpeed the fixed
    contiguous micro-batches are kept (its engine counts micro-steps).
    """
    trained = ro.trained_mask.any(1).tolist()
    plan = []
    for micro in run.updates:
        if run.use_deepspeed:
            plan.append([list(range(lo, hi)) for lo, hi in micro])
            continue
        lo_u, hi_u = micro[0][0], micro[-1][1]
        active = [n for n in range(lo_u, hi_u) if trained[n]] or [lo_u]
        mbs = run.cfg.micro_batch_size
        plan.append([active[a: a + mbs] for a in range(0, len(active), mbs)])
    return plan


def score(run: Run, ro: Rollouts, plan) -> tuple[Tensor, Tensor | None, Tensor]:
    """Old log-probs, reference log-probs (None without a reference) and entropies, ``[N, L]`` on the CPU.

    Computed in the micro-batches the updates will use, so the first update sees ratio 1 exactly.
    """
    N, L = ro.input_ids.shape
    old, ent = torch.zeros(N, L), torch.zeros(N, L)
    ref = torch.zeros(N, L) if run.ref is not None else None
    device, share = run.accelerator.device, run.cfg.share_prompt
    with torch.no_grad(), run.accelerator.autocast():
        for idx in (c for update in plan for c in update):
            ids, am, cm, sw, kw, c0 = select(ro, idx, device)
            mask = cm.bool() | (sw > 0)
            sel = torch.tensor(idx)
            lp, e = micro_logprobs(run.policy, ro, idx, ids, am, mask, kw, share=share, with_entropy=True)
            old[sel, c0:], ent[sel, c0:] = lp.cpu(), e.cpu()
            if ref is not None:
                ref[sel, c0:] = micro_logprobs(run.ref, ro, idx, ids, am, mask, kw, share=share)[0].cpu()
    return old, ref, ent


def diverged(run: Run, what: str, value: float, step: int) -> TrainingDiverged:
    last = run.checkpointer.latest()
    where = f"the last good state is {last[0]} (step {last[1]['step']})" if last else "no state was saved yet"
    return TrainingDiverged(f"{what} became {value} at step {step}; training stopped, {where}. "
                            "A rerun with the same settings resumes from it (a transient fault); with other settings "
                            "(e.g. a lower learning rate) the arm starts over.")


def update(run: Run, ro: Rollouts, advantages: Tensor, old: Tensor, ref: Tensor | None, step: int, plan) -> dict:
    """The step's optimiser updates; returns the update metrics (policy_loss, clip_ratio, grad_norm, lr, sft_loss)."""
    cfg, acc, model = run.cfg, run.accelerator, run.model
    device = acc.device
    trained = ro.trained_mask
    cmask = ro.completion_mask.bool()
    world = acc.num_processes
    pg_sum = rl_tok_sum = sft_sum = sft_tok_sum = 0.0
    clip_ratios, grad_norms, lrs = [], [], []
    model.train()
    for micro, chunks in zip(run.updates, plan):
        lo_u, hi_u = micro[0][0], micro[-1][1]
        # verl's token-mean over the mini-batch's active tokens, RL and SFT alike (losses.grpo_loss)
        normalizer = max(run.allsum([float(trained[lo_u:hi_u].sum())])[0], 1.0)
        n_rl_upd = float(cmask[lo_u:hi_u].sum())
        upd_pg = upd_clip = upd_sft = upd_sft_tok = 0.0
        for k, idx in enumerate(chunks):
            ids, am, cm, sw, kw, c0 = select(ro, idx, device)
            sel = torch.tensor(idx)
            if run.use_deepspeed:
                ctx = acc.accumulate(model)
            else:
                ctx = contextlib.nullcontext() if k == len(chunks) - 1 else acc.no_sync(model)
            with ctx, acc.autocast():
                sft_mask = sw > 0
                logp, _ = micro_logprobs(model, ro, idx, ids, am, cm.bool() | sft_mask, kw, share=cfg.share_prompt)
                ref_lp = ref[sel, c0:].to(device) if ref is not None else None
                out = grpo_loss(logp, old[sel, c0:].to(device), ref_lp, advantages[sel].to(device), cm,
                                clip_low=cfg.clip_low, clip_high=cfg.clip_high, clip_ratio_c=cfg.clip_ratio_c,
                                kl_coef=cfg.kl_coef, sft_mask=sft_mask, sft_weight=sw, normalizer=normalizer)
                check_finite(out.loss, step, run.checkpointer)
                # backward divides by gradient_accumulation_steps (DeepSpeed: in its engine) and data
                # parallelism averages over processes; undo both so the gradient is Σ_tokens / normalizer
                acc.backward(out.loss * world * acc.gradient_accumulation_steps)
            n_rl, n_sft = float(cm.sum()), float(sft_mask.sum())
            upd_pg += float(out.policy_loss) * n_rl
            upd_clip += float(out.clip_fraction) * n_rl
            upd_sft += float(out.sft_loss) * n_sft
            upd_sft_tok += n_sft
        norm = acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
        norm = float(norm) if norm is not None else float("nan")
        if not math.isfinite(norm) and not run.use_deepspeed:
            raise diverged(run, "the gradient norm", norm, step)
        lrs.append(float(run.opt.param_groups[0]["lr"]))
        run.opt.step()
        run.sched.step()
        run.opt.zero_grad(set_to_none=True)
        upd_pg, upd_clip, upd_sft, upd_sft_tok, n_rl_upd = run.allsum([upd_pg, upd_clip, upd_sft, upd_sft_tok, n_rl_upd])
        pg_sum += upd_pg
        rl_tok_sum += n_rl_upd
        sft_sum += upd_sft
        sft_tok_sum += upd_sft_tok
        clip_ratios.append(upd_clip / max(n_rl_upd, 1.0))
        grad_norms.append(norm)
    model.eval()
    return {"policy_loss": pg_sum / max(rl_tok_sum, 1.0), "clip_ratio": mean(clip_ratios),
            "grad_norm": mean(grad_norms), "lr": lrs[-1],
            "sft_loss": sft_sum / sft_tok_sum if sft_tok_sum else float("nan"), "sft_tokens": int(sft_tok_sum)}
