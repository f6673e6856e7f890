"""Rollout backends. ``hf`` (transformers generate, CPU or GPU) is imported here; the optional
``vllm`` backend lives in ``synergy.generate.vllm`` and is imported only where used."""

from synergy.generate.hf import Completion, SamplingConfig, generate

__all__ = ["Completion", "SamplingConfig", "generate"]
