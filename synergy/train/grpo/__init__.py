"""GRPO of paper §2.2 with verl's definitions (docs/paper.md §4; docs/ecosystem.md §2, §4).

One training step, as verl's ``RayPPOTrainer`` with ``adv_estimator=grpo``, ``use_kl_loss=True``,
``kl_loss_type=low_var_kl``, ``loss_agg_mode=token-mean``, ``ppo_epochs=1`` (``loop``):

1. take ``prompts_per_step`` questions (verl ``data.train_batch_size``; paper 128; ``data``);
2. sample ``num_generations`` (G, paper 8) responses per question at the rollout temperature
   (``sampling``, ``rollouts``);
3. reward each response with the one grader: ``accuracy_weight * correct + format_weight *
   format_ok`` (paper: 0.9 / 0.1); advantages per group (``losses.group_advantages``);
4. log-probs of the responses under the current policy ("old", no grad) and, when ``kl_coef > 0``,
   under the frozen reference model (``update.score``);
5. ``prompts_per_step // mini_batch_size`` optimiser updates (paper 128 / 64 = 2), each over the
   sequences of ``mini_batch_size`` prompts, run in micro-batches of ``micro_batch_size`` sequences
   whose losses are normalised by the mini-batch's total completion tokens, so the accumulated
   gradient is verl's token-mean over the mini-batch; gradient clipping, AdamW, lr schedule
   (``update.update``, ``synergy.train.core``).

The hybrids of paper §3.1 (interleaved, progressive) change what step 2 does with the questions
none of whose rollouts is correct (``hybrid``); ``batch`` packs the step's sequences into the
log-prob batch; ``metrics`` names what every step logs; ``run`` sets a run up.

Deviations and choices (none changes the objective unless stated; each module says more):

1. Rollouts come from ``synergy.generate.hf.generate`` or, with ``rollout_backend: vllm``, an
   in-process vLLM engine whose weights are refreshed from the trainer after every step (verl's
   hybrid engine and TRL's colocate mode do the same). The step's seed is a function of (run seed,
   step, process), so a resumed hf run samples exactly what the uninterrupted run sampled (vLLM: up
   to its batching numerics).
2. Old log-probs are recomputed by the trainer before the updates, never taken from the sampler
   (docs/ecosystem.md §10, item 10).
3. The response token ids are the sampler's own (``Completion.token_ids``), up to and including the
   first stop token; nothing is re-tokenised from decoded text. The prompt part is the processor's
   encoding of the same prompt, checked against the ids the sampler saw.
4. The log-prob forward gets the same multimodal inputs the sampler got: ``mm_token_type_ids``
   (Qwen2.5-VL's 3-D M-RoPE positions) only if the processor returns it; sampler and trainer agree
   to float error.
5. Truncated responses are kept and trained, rewarded as graded; no overlong masking or penalty
   (verl's default). The share is logged as ``truncated_rate`` (docs/ecosystem.md §10, item 6).
6. Vision placeholder tokens are suppressed during sampling (docs/ecosystem.md §10, item 2).
7. Data order: one continuous stream over per-epoch shuffles; ``drop_easy`` (paper §2.2 "w/o
   easiest") is applied by the caller with ``drop_easy_questions`` before training.
8. Precision: float32 master weights (bf16 autocast on GPU); the final model is saved in the init
   checkpoint's dtype.
9. No entropy bonus (verl ``entropy_coeff`` 0).
10. Several processes (accelerate): every process samples, scores and trains its share of each
    mini-batch's prompts; the token normaliser and the metrics are summed over processes and the
    loss is multiplied by the process count (data-parallel averaging). Under DeepSpeed ZeRO-2/3
    (``deepspeed_stage``) the reference runs in an inference engine, the hf sampler runs with
    ``synced_gpus`` and the final save gathers the weights (``synergy.train.zero``; tested with 2
    processes over gloo for every arm kind in tests/test_zero_grpo.py).
"""

from __future__ import annotations

from synergy.train.grpo.batch import Rollouts, rollout_rows
from synergy.train.grpo.data import drop_easy_questions, step_row_indices, step_seed
from synergy.train.grpo.hybrid import HybridPlan, prefix_fraction, zero_pass_ids
from synergy.train.grpo.loop import train_grpo
from synergy.train.grpo.metrics import HYBRID_COLUMNS, METRIC_COLUMNS
from synergy.train.grpo.rollouts import collect_rollouts
from synergy.train.grpo.sampling import sample_groups, stop_ids, vision_token_ids

__all__ = ["HYBRID_COLUMNS", "METRIC_COLUMNS", "HybridPlan", "Rollouts", "collect_rollouts", "drop_easy_questions",
           "prefix_fraction", "rollout_rows", "step_row_indices", "step_seed", "train_grpo", "zero_pass_ids"]
_sample, _stop_ids, _vision_token_ids = sample_groups, stop_ids, vision_token_ids  # their names before the package split
