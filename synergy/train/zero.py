"""DeepSpeed ZeRO around the trainers (paper §2.1-2.2 train 7B with full fine-tuning; docs/gpu.md "DeepSpeed ZeRO").

What SFT, GRPO and the hybrids need besides ``accelerator.prepare`` when a ZeRO stage is set:

1. ``set_batch_sizes``: DeepSpeed needs ``train_micro_batch_size_per_gpu`` (and the global
   ``train_batch_size``) in its config; accelerate fills its ``"auto"`` only from a DataLoader
   passed to ``prepare``, and our trainers pass none, so ``prepare`` would raise ``ValueError``.
2. ``wrap_reference``: the frozen KL reference of GRPO. Under ZeRO-3 every ``from_pretrained``
   runs inside DeepSpeed's ``zero.Init`` (accelerate turns it on for the whole process), so the
   reference's parameters are partitions of shape ``(0,)`` until an engine gathers them in its
   forward hooks. As TRL's ``prepare_deepspeed`` does, the reference goes into an inference-only
   engine with the training config (stage 3 kept, so it stays sharded: 1/N of its weights per GPU;
   with stage 1/2 the config's stage becomes 0 and the reference is replicated). Replicating it in
   bf16 instead would cost the full 15 GB of a 7B model on every GPU beside the policy's shards
   and a colocated vLLM engine; sharding costs one all-gather per layer per reference forward.
3. ``gathered``: a context in which a ZeRO-3 model's parameters are whole (``GatheredParameters``
   on every rank: a collective), for the final save and for copying weights into vLLM.
4. ``zero_stage``: the stage a prepared accelerator runs (None without DeepSpeed).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator

log = logging.getLogger("synergy.train")


def zero_stage(accelerator) -> int | None:
    """The ZeRO stage of ``accelerator`` (None when it does not run DeepSpeed)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    if plugin is None or kind != "DEEPSPEED":
        return None
    return int(plugin.zero_stage)


def set_batch_sizes(accelerator, micro_batch_size: int, grad_accum: int) -> None:
    """Write DeepSpeed's batch sizes (micro-batch per GPU, accumulation, global) into its config before ``prepare``."""
    if zero_stage(accelerator) is None:
        return
    cfg = accelerator.state.deepspeed_plugin.deepspeed_config
    cfg["train_micro_batch_size_per_gpu"] = int(micro_batch_size)
    cfg["gradient_accumulation_steps"] = int(grad_accum)
    cfg["train_batch_size"] = int(micro_batch_size) * int(grad_accum) * accelerator.num_processes


def wrap_reference(model, accelerator):
    """The frozen reference ``model`` ready for forward passes on ``accelerator``'s device(s) (see item 2 above)."""
    model.requires_grad_(False)
    model.eval()
    stage = zero_stage(accelerator)
    if stage is None:
        return model.to(accelerator.device)
    import deepspeed

    cfg = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    cfg.pop("optimizer", None)
    cfg.pop("scheduler", None)
    if stage != 3:
        cfg["zero_optimization"] = {"stage": 0}
    engine, *_ = deepspeed.initialize(model=model, config=cfg)
    engine.eval()
    log.info("reference model in a DeepSpeed inference engine (ZeRO stage %d)", 3 if stage == 3 else 0)
    return engine


@contextlib.contextmanager
def gathered(model, accelerator) -> Iterator[None]:
    """Inside, every parameter of ``model`` (an unwrapped module) is whole on every rank (ZeRO-3); a no-op otherwise.

    Every process must enter it (the gather is a collective). Changes made inside are not
    written back (``modifier_rank=None``).
    """
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield
