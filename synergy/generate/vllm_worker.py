"""The vLLM worker extension of GRPO's colocated rollout engine (paper §2.2 rollouts; docs/gpu.md).

``vllm.LLM(..., worker_extension_cls="synergy.generate.vllm_worker.WeightSync")`` mixes this class
into vLLM's worker class, so ``LLM.collective_rpc("synergy_load_weights", args=(weights,))`` calls
the named method below on every worker: vLLM's public route for custom worker calls (TRL's
``WeightSyncWorkerExtension`` is built the same way). The method reaches the model through the
worker's own ``get_model()`` and loads with the model's ``load_weights`` (which maps the
transformers names onto vLLM's layout and shards for tensor parallelism). Nothing here imports
vLLM, so the module imports anywhere; tests/test_vllm_contract.py checks the names it relies on
against the pinned vLLM's source.
"""

from __future__ import annotations

WORKER_EXTENSION = "synergy.generate.vllm_worker.WeightSync"
LOAD_METHOD = "synergy_load_weights"


class WeightSync:
    """Named worker methods for ``LLM.collective_rpc`` (their names must not clash with the worker's own)."""

    def synergy_load_weights(self, weights) -> int:
        """Load ``[(transformers name, tensor), ...]`` into this worker's model; returns how many were loaded."""
        loaded = self.get_model().load_weights(weights=weights)
        return len(loaded) if loaded is not None else len(weights)
