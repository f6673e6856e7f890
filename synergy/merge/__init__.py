"""Model merging of paper §3.3: Linear, TIES and SLERP between an SFT arm and the RL arm.

The paper merged its SFT and RL checkpoints with MergeKit at SFT-model ratios 0, 0.25, 0.5, 0.75
and 1 (0 = the RL model, 1 = the SFT model) and found no synergy (Linear 0.25 best on average).
Two backends (``MergeSettings.backend``, config ``merging.backend``; docs/merging.md):

* ``native`` (``engine``): the methods (``methods``) tensor by tensor over safetensors files
  (``safetensors_io``), read, combined and written by a thread pool, in chunks of rows for large
  tensors, so memory stays near a few chunks per thread whatever the model size;
* ``mergekit`` (``mergekit_backend``): MergeKit itself (the paper's tool; LGPL-3.0, an optional
  install in its own environment, envs/mergekit.yaml), run on the same parents with the same
  settings.

Choices where the paper is silent (documented, configurable in ``merging:``): TIES density 0.5
and scale 1 (MergeKit's examples); the base of TIES is the base model both arms started from.
At the endpoints every method returns the parent exactly (ratio 0 = the RL arm, 1 = the SFT arm,
as the paper defines them), although TIES' formula would return the trimmed task vector there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synergy.merge.engine import INDEX_NAME, SINGLE_NAME, canonical_key, iter_tensors
from synergy.merge.engine import merge_models as merge_native
from synergy.merge.methods import (
    BACKENDS,
    METHODS,
    MergeSettings,
    linear,
    merge_tensor,
    slerp,
    ties,
    trim_threshold,
)
from synergy.merge.safetensors_io import MergeError, SafetensorsReader, StreamingSafetensorsWriter

__all__ = [
    "BACKENDS", "INDEX_NAME", "METHODS", "SINGLE_NAME", "MergeError", "MergeSettings", "SafetensorsReader",
    "StreamingSafetensorsWriter", "canonical_key", "iter_tensors", "linear", "merge_models", "merge_native",
    "merge_tensor", "slerp", "ties", "trim_threshold",
]


def merge_models(rl_dir: str | Path, sft_dir: str | Path, out_dir: str | Path, settings: MergeSettings,
                 base_dir: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
                 **kwargs) -> dict:
    """Merge two checkpoints into ``out_dir`` with ``settings.backend``; return the summary (``merge_summary.json``).

    ``settings.sft_ratio`` is the SFT model's weight; ``base_dir`` (TIES only) the model both parents
    were trained from. Raises ``MergeError`` naming the problem (different tensors or shapes, a
    backend that is not installed). ``kwargs`` go to the backend (native: ``chunk_bytes``, ``threads``).
    """
    if settings.backend == "mergekit":
        from synergy.merge.mergekit_backend import merge_with_mergekit

        return merge_with_mergekit(rl_dir, sft_dir, out_dir, settings, base_dir=base_dir, **kwargs)
    return merge_native(rl_dir, sft_dir, out_dir, settings, base_dir=base_dir, progress=progress, **kwargs)
