"""GRPO step 2 (paper §2.2): sample G responses per prompt with the policy, keeping the ids exactly as generated.

``sample_groups`` is the hf sampler of ``collect_rollouts``; ``synergy.generate.vllm.RolloutEngine.sample``
has the same contract (``grpo.rollout_backend: vllm``). Both return a dict: ``prompt_ids`` (per
prompt, the ids the sampler encoded), ``comp_ids`` (per sequence, prompt-major: the sampled ids up
to and including the first stop token), ``texts`` (their decoding, special tokens skipped),
``ended`` (a stop token was sampled) and ``stop`` (the stop ids).

Vision placeholder tokens (``<|image_pad|>``, ``<|video_pad|>``, ``<|vision_start|>``) are
suppressed: one of them inside a response would break the multimodal forward of the log-prob pass
("image features and image tokens do not match"). For an instruct model this is a no-op; for a
small random model the sampling distribution is the policy renormalised over the other tokens (the
trainer's log-probs keep the full softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from synergy.config import GRPOSettings
from synergy.generate.hf import SamplingConfig, generate
from synergy.prompts import Prompt

_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id")


def _config_value(model, key: str):
    cfg = model.config
    value = getattr(cfg, key, None)
    if value is None:
        value = getattr(getattr(cfg, "text_config", None), key, None)
    return value


def vision_token_ids(model) -> list[int]:
    """The model's vision placeholder ids (image, video, vision start), suppressed in rollouts."""
    return [int(v) for v in (_config_value(model, k) for k in _VISION_TOKEN_KEYS) if v is not None]


def stop_ids(model, processor) -> list[int]:
    """The model's stop ids: ``generation_config.eos_token_id``, else the tokenizer's EOS."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def needs_sync(model) -> bool:
    """True when ``model``'s weights are ZeRO-3 partitions and several processes run: each forward is a collective."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    return any(hasattr(p, "ds_status") for p in model.parameters())


def sample_groups(model, processor, prompts: Sequence[Prompt], cfg: GRPOSettings, step_seed: int) -> dict:
    """Sample G completions per prompt; return the prompts' ids and the completions' ids exactly as generated.

    Under ZeRO-3 with several processes the sampler runs with ``synced_gpus`` (``needs_sync``): the
    callers give every process the same number of prompts (``rollouts.collect_rollouts`` pads).
    """
    sampling = SamplingConfig(n=cfg.num_generations, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                              max_new_tokens=cfg.max_new_tokens, seed=int(step_seed))
    vision_ids = vision_token_ids(model)
    completions = generate(model, processor, prompts, sampling, suppress_tokens=vision_ids,
                           synced_gpus=needs_sync(model))
    if any(len(cs) != cfg.num_generations for cs in completions):
        raise RuntimeError(f"expected {cfg.num_generations} samples per prompt, got {[len(cs) for cs in completions]}")
    samples = [c for cs in completions for c in cs]
    comp_ids = [list(c.token_ids) for c in samples]
    bad = set(vision_ids) & {t for c in comp_ids for t in c}
    if bad:
        raise RuntimeError(f"a completion contains vision placeholder tokens {sorted(bad)} despite suppression")
    return {"prompt_ids": [list(cs[0].prompt_ids) for cs in completions], "comp_ids": comp_ids,
            "texts": [c.text for c in samples], "ended": [not c.truncated for c in samples],
            "stop": torch.tensor(stop_ids(model, processor))}
