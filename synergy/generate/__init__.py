"""Rollout backends. ``hf`` (transformers generate, CPU or GPU) is imported here; the optional
``vllm`` backend lives in ``synergy.generate.vllm`` and imports vLLM only when it is used.

``get_backend(name)`` is the one dispatch point (``difficulty.backend``, ``evaluation.backend``):
it returns a ``Backend`` whose ``load(model_dir, ...)`` gives ``(model, processor)`` and whose
``generate(model, processor, prompts, cfg, progress=None)`` has the contract of
``synergy.generate.hf.generate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from synergy.generate.hf import Completion, SamplingConfig, generate

BACKENDS = ("hf", "vllm")

__all__ = ["BACKENDS", "Backend", "Completion", "SamplingConfig", "generate", "get_backend"]


@dataclass(frozen=True)
class Backend:
    """A generation backend: how to load a model folder and how to sample from it."""

    name: str
    load: Callable  # (model_dir, *, vllm=None, max_pixels=None) -> (model, processor)
    generate: Callable  # (model, processor, prompts, cfg, progress=None) -> list[list[Completion]]


def _load_hf(model_dir, *, vllm=None, max_pixels=None):
    """The transformers model on the job's GPU when it has one (bf16), else on the CPU (fp32)."""
    import torch

    from synergy.models import load_model

    return load_model(model_dir, device="cuda" if torch.cuda.is_available() else "cpu", max_pixels=max_pixels)


def _load_vllm(model_dir, *, vllm=None, max_pixels=None):
    from synergy.generate import vllm as backend

    return backend.load(model_dir, vllm, max_pixels=max_pixels)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``hf`` or ``vllm``).

    ``vllm`` raises ``synergy.generate.vllm.VLLMUnavailable`` (an ``ImportError``) naming the install
    (``pip install -e '.[gpu]'`` / ``envs/gpu.yaml``) when vLLM is not installed; an unknown name
    raises ``ValueError``.
    """
    if name == "hf":
        return Backend("hf", _load_hf, generate)
    if name == "vllm":
        from synergy.generate import vllm as backend

        backend.import_vllm()  # fail here, before any model is loaded, with the install hint
        return Backend("vllm", _load_vllm, backend.generate)
    raise ValueError(f"unknown generation backend {name!r}; known: {list(BACKENDS)}")
