"""The ``vllm`` rollout backend: offline vLLM sampling on GPUs (paper §2.3 difficulty, §2.4 evaluation,
§2.2 GRPO rollouts).

Same contract as ``synergy.generate.hf.generate``: the same ``Prompt`` inputs, the same
``SamplingConfig`` (``n``, ``temperature``, ``top_p``, ``top_k`` with 0 = off, ``max_new_tokens``,
``min_new_tokens``, ``seed``), the same ``Completion`` outputs (``text`` decoded with special tokens
skipped by the model's own tokenizer, ``num_tokens`` up to and including the stop token,
``truncated`` when ``max_new_tokens`` ran out), in input order. Nothing here imports vLLM at
module level: ``import vllm`` happens inside the functions that need it, so this module (and its
CPU tests) import on machines without vLLM; they raise ``VLLMUnavailable`` naming the install
(``pip install -e '.[gpu]'`` or the conda env ``envs/gpu.yaml``, docs/gpu.md).

How a request is built (``build_requests``):

* the prompt is the chat-templated *text* from ``hf.prompt_texts`` - the very string the hf
  backend tokenises, generation prompt and any ``assistant_prefix`` included (progressive
  SFT & RL's trace prefix, paper §3.1, is therefore part of the prompt vLLM continues);
* images go as ``multi_modal_data={"image": [PIL images]}`` (one ``<|image_pad|>`` placeholder
  per ``{"type": "image"}`` part, expanded by vLLM's Qwen2.5-VL processor);
* the engine is built with ``limit_mm_per_prompt={"image": vllm.limit_mm_per_prompt}`` and, when
  a pixel cap is set (``prompt.max_pixels``, the cap training uses), ``mm_processor_kwargs=
  {"max_pixels": ...}``: vLLM also sizes its memory profile with it (docs/ecosystem.md §9: without a
  cap it profiles the processor's worst case).

Sampling parameters (``sampling_params_kwargs``): ``top_k`` 0 (off) is passed as 0, vLLM 0.33's own "off";
``repetition_penalty`` is 1 and every sampling value is explicit, so a checkpoint's
``generation_config.json`` sampling defaults are ignored as in the hf backend; the stop tokens are
the checkpoint's ``generation_config.json`` ``eos_token_id`` (Qwen2.5-VL: ``<|im_end|>`` and
``<|endoftext|>``), else the tokenizer's EOS, passed as ``stop_token_ids``. Greedy sampling
(``temperature == 0``) asks for one sample and repeats it ``n`` times, as hf does.

Deviations from the hf backend (none changes what a completion means):

1. Seeds: hf seeds each ``generate`` call (``hf.batch_seed``); vLLM takes one seed per request,
   so prompt ``i`` gets ``request_seed(cfg.seed, i)`` and vLLM derives the ``n`` samples' seeds
   from it. Same prompts, model, config and vLLM version give the same samples only up to
   vLLM's batching numerics (vLLM docs "Reproducibility": exact runs need
   ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` or ``VLLM_BATCH_INVARIANT=1``); samples never equal the
   hf backend's (different kernels and random streams).
2. Texts are decoded from vLLM's ``CompletionOutput.token_ids`` with the processor's tokenizer
   (``batch_decode(..., skip_special_tokens=True)``, as hf does), not taken from vLLM's
   incremental detokeniser, so the two backends' texts of the same ids are identical.
3. ``max_batch_sequences`` is ignored: vLLM schedules the whole list itself (continuous batching);
   ``progress`` is called once, when all prompts are done.

GRPO rollouts (``RolloutEngine``, used by ``synergy.train.grpo`` when ``grpo.rollout_backend:
vllm``): one in-process ``LLM`` per training process, colocated with the trainer on its GPU(s)
(``distributed_executor_backend="external_launcher"``, ``gpu_memory_utilization=
vllm.rollout_gpu_memory_utilization``, seed ``process_index // tensor_parallel_size``: TRL's
colocate recipe, docs/ecosystem.md §3). After every optimiser step the trainer's parameters are
pushed into it: the engine is built with ``worker_extension_cls`` =
``synergy.generate.vllm_worker.WeightSync``, and ``LLM.collective_rpc("synergy_load_weights",
args=(weights,))`` calls that named method on the engine's worker(s); it loads through the
worker's ``get_model().load_weights([(name, tensor), ...])`` (the model maps the transformers
names ``model.language_model.*`` / ``model.visual.*`` / ``lm_head.*`` onto vLLM's layout and
shards for tensor parallelism), then ``LLM.reset_prefix_cache()`` drops KV blocks computed with
the old weights. No private attribute path is used (TRL reaches
``llm.llm_engine.model_executor.driver_worker.model_runner.model``); with ``external_launcher``
the worker lives in this process, so the tensors are handed over by reference, never
serialised. ``vllm.rollout_max_num_batched_tokens`` bounds the tokens of one engine step. Parameters are pushed one
at a time (under DeepSpeed ZeRO-3 each is gathered for the call, as TRL does), only those that
train (a frozen ViT is never pushed). The rollouts' prompt ids as vLLM saw them are checked
against the trainer processor's encoding of the same prompt (same image-token count, same
prefix tokens) before any log-prob is computed; a mismatch raises (``mm_processor_kwargs`` take
the trainer processor's pixel bounds so they agree by construction). Sleep mode
(``enable_sleep_mode``, ``LLM.sleep`` / ``wake_up``) is not used: the engine keeps its
``rollout_gpu_memory_utilization`` share of the GPU through the update.

vLLM API relied on (vLLM 0.33; docs.vllm.ai "Offline Inference", "Sampling Parameters",
"Multimodal Inputs", "Reproducibility", "Sleep Mode"; ``vllm/entrypoints/llm.py`` ``LLM``
docstring; ``examples/offline_inference/vision_language.py`` ``run_qwen2_5_vl``): ``LLM(model,
tensor_parallel_size, gpu_memory_utilization, max_model_len, seed, dtype, limit_mm_per_prompt,
mm_processor_kwargs, trust_remote_code, distributed_executor_backend, worker_extension_cls,
max_num_batched_tokens)``; ``LLM.generate(list of
{"prompt", "multi_modal_data"}, SamplingParams, use_tqdm=False)`` returning ``RequestOutput``s in
input order with ``prompt_token_ids`` and ``outputs`` (``CompletionOutput.index``, ``token_ids``
incl. the stop token, ``finish_reason`` ``"stop"`` / ``"length"``); ``SamplingParams(n,
temperature, top_p, top_k, max_tokens, min_tokens, seed, repetition_penalty, stop_token_ids,
logit_bias)``; ``LLM.collective_rpc`` with a method name; the worker's ``get_model``;
``LLM.reset_prefix_cache``. tests/test_vllm_contract.py checks every one of these names against the
pinned wheel's source. Nothing here has run against a real vLLM yet (docs/gpu.md says what was and
was not run).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synergy.generate.hf import Completion, SamplingConfig, batch_seed, prompt_texts
from synergy.generate.vllm_worker import LOAD_METHOD
from synergy.prompts import Prompt

log = logging.getLogger("synergy.generate")

INSTALL_HINT = ("install the GPU stack on a CUDA machine: `conda env create -f envs/gpu.yaml`, then "
                "`bash envs/gpu.post-deploy.sh` (it runs `pip install --no-deps -e .`); the gpu extra "
                "(`pip install -e '.[gpu]'`) names the same pins but vLLM's torch pin conflicts with the CPU "
                "one, so it resolves only inside that env (docs/gpu.md)")
VLLM_VERSION = "0.33.0"  # the version this module is written against (pyproject's gpu extra, envs/gpu.yaml)
SUPPRESS_BIAS = -1.0e9  # logit bias that removes a token (vision placeholders in GRPO rollouts)

__all__ = ["INSTALL_HINT", "RolloutEngine", "VLLMModel", "VLLMUnavailable", "as_vllm_config", "build_requests",
           "completions_from_outputs", "engine_kwargs", "generate", "import_vllm", "load", "pixel_bounds",
           "request_seed", "rollout_batch", "rollout_engine_kwargs", "sampling_params_kwargs", "stop_token_ids", "trainable_weights"]


class VLLMUnavailable(ImportError):
    """vLLM (or CUDA) is missing where the ``vllm`` backend was asked for."""


def import_vllm():
    """``import vllm``, or ``VLLMUnavailable`` saying how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailable(f"the vllm generation backend needs vLLM {VLLM_VERSION}, which is not installed here "
                              f"({exc}); {INSTALL_HINT}. The hf backend (difficulty.backend / evaluation.backend / "
                              "grpo.rollout_backend: hf) runs without it.") from exc
    version = getattr(vllm, "__version__", "?")
    if version != VLLM_VERSION:
        log.warning("vLLM %s is installed; synergy's vllm backend was written against %s", version, VLLM_VERSION)
    return vllm


# ---------------------------------------------------------------------------------------------- pure parts


def request_seed(seed: int, index: int) -> int:
    """The vLLM seed of request ``index`` (prompt ``index`` of one call), < 2**31 so that vLLM's
    per-sample offsets stay in range."""
    return batch_seed(seed, index) % (2**31 - 1)


def sampling_params_kwargs(cfg: SamplingConfig, stop_ids: Sequence[int], *, seed: int | None = None,
                           suppress_ids: Sequence[int] = ()) -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` for ``cfg`` (one request).

    ``top_k`` 0 means off, as in vLLM 0.33 (its default; -1 is deprecated); greedy (``temperature == 0``) -> ``n=1`` (the caller repeats it);
    ``suppress_ids`` get a ``SUPPRESS_BIAS`` logit bias (never sampled).
    """
    greedy = cfg.temperature == 0
    kwargs: dict[str, Any] = {
        "n": 1 if greedy else cfg.n,
        "temperature": 0.0 if greedy else float(cfg.temperature),
        "top_p": 1.0 if greedy else float(cfg.top_p),
        "top_k": 0 if greedy else int(cfg.top_k),  # 0 = off (vLLM 0.33's default; -1 is deprecated)
        "max_tokens": int(cfg.max_new_tokens),
        "min_tokens": int(cfg.min_new_tokens),
        "repetition_penalty": 1.0,
        "seed": int(cfg.seed if seed is None else seed),
        "stop_token_ids": [int(t) for t in stop_ids],
    }
    if suppress_ids:
        kwargs["logit_bias"] = {int(t): SUPPRESS_BIAS for t in suppress_ids}
    return kwargs


def build_requests(processor, prompts: Sequence[Prompt], texts: Sequence[str] | None = None) -> list[dict]:
    """vLLM prompt dicts: the hf backend's exact prompt text, images as ``multi_modal_data``."""
    texts = list(texts) if texts is not None else prompt_texts(processor, prompts)
    out = []
    for text, p in zip(texts, prompts, strict=True):
        req: dict[str, Any] = {"prompt": text}
        if p.images:
            req["multi_modal_data"] = {"image": list(p.images)}
        out.append(req)
    return out


def pixel_bounds(processor) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) of a Qwen2-VL image processor (``size`` dict or attributes), None if unknown."""
    improc = getattr(processor, "image_processor", None)
    size = getattr(improc, "size", None) or {}
    get = size.get if hasattr(size, "get") else (lambda k: getattr(size, k, None))
    lo = getattr(improc, "min_pixels", None) or get("shortest_edge")
    hi = getattr(improc, "max_pixels", None) or get("longest_edge")
    return (int(lo) if lo else None, int(hi) if hi else None)


def engine_kwargs(model_dir, vcfg, *, max_pixels: int | None = None, min_pixels: int | None = None,
                  seed: int = 0, trust_remote_code: bool = False, **extra) -> dict:
    """Keyword arguments of ``vllm.LLM`` for a model folder and a ``VLLMConfig``."""
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "tensor_parallel_size": int(vcfg.tensor_parallel_size),
        "gpu_memory_utilization": float(vcfg.gpu_memory_utilization),
        "max_model_len": vcfg.max_model_len,
        "limit_mm_per_prompt": {"image": int(vcfg.limit_mm_per_prompt)},
        "seed": int(seed),
        "dtype": "bfloat16",
        "trust_remote_code": bool(trust_remote_code),
    }
    mm = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    if mm:
        kwargs["mm_processor_kwargs"] = mm
    kwargs.update(extra)
    return kwargs


def as_vllm_config(vcfg):
    """A ``VLLMConfig`` from None (defaults), a mapping (the study config's ``vllm:`` section) or itself."""
    from synergy.config import VLLMConfig

    if vcfg is None:
        return VLLMConfig()
    if isinstance(vcfg, Mapping):
        return VLLMConfig.from_dict(vcfg, "vllm")
    return vcfg


def stop_token_ids(model_dir, tokenizer) -> list[int]:
    """The checkpoint's stop tokens: ``generation_config.json`` ``eos_token_id`` (int or list), else the tokenizer's EOS."""
    eos = None
    path = Path(model_dir) / "generation_config.json"
    if path.is_file():
        eos = json.loads(path.read_text()).get("eos_token_id")
    if eos is None:
        eos = tokenizer.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if not eos:
        raise ValueError(f"{model_dir}: no eos_token_id in generation_config.json or the tokenizer")
    return [int(t) for t in eos]


def _sample_ids(output, stop_ids: set[int]) -> tuple[list[int], bool]:
    """(token ids up to and including the stop token, ended with a stop token) of one CompletionOutput."""
    ids = [int(t) for t in output.token_ids]
    if output.finish_reason == "length":
        return ids, False
    if output.finish_reason != "stop":
        raise RuntimeError(f"vLLM finished a sample with reason {output.finish_reason!r} (expected stop or length)")
    for k, t in enumerate(ids):  # vLLM keeps the stop token in token_ids; cut anything after the first one
        if t in stop_ids:
            return ids[: k + 1], True
    reason = getattr(output, "stop_reason", None)
    if isinstance(reason, int) and reason in stop_ids:  # stop token not echoed: add it, as hf keeps it
        return ids + [reason], True
    raise RuntimeError(f"vLLM stopped a sample without one of the stop tokens {sorted(stop_ids)} "
                       f"(stop_reason {reason!r}): no stop strings are used, so this should not happen")


def completions_from_outputs(outputs: Sequence, n: int, tokenizer, stop_ids: Sequence[int],
                             greedy: bool = False) -> tuple[list[list[Completion]], list[list[list[int]]]]:
    """``Completion``s (and their token ids) of vLLM ``RequestOutput``s, prompt-major, samples in ``index`` order.

    Each ``Completion`` carries its ``token_ids`` and vLLM's ``prompt_token_ids`` as ``prompt_ids``.
    Texts are decoded from the ids with ``tokenizer`` (special tokens skipped, as hf);
    ``num_tokens`` counts the stop token; ``truncated`` is ``finish_reason == "length"``.
    ``greedy``: each output has one sample, repeated ``n`` times.
    """
    stop = set(int(t) for t in stop_ids)
    ids_all, ended_all = [], []
    for o in outputs:
        samples = sorted(o.outputs, key=lambda c: c.index)
        want = 1 if greedy else n
        if len(samples) != want:
            raise RuntimeError(f"vLLM returned {len(samples)} samples for a request, expected {want}")
        per = [_sample_ids(c, stop) for c in samples]
        ids_all.append([p[0] for p in per])
        ended_all.append([p[1] for p in per])
    flat = [ids for per in ids_all for ids in per]
    texts = iter(tokenizer.batch_decode(flat, skip_special_tokens=True)) if flat else iter(())
    completions, token_ids = [], []
    for o, ids_per, ended_per in zip(outputs, ids_all, ended_all):
        prompt_ids = tuple(int(t) for t in (getattr(o, "prompt_token_ids", None) or ()))
        cs = [Completion(text=next(texts), num_tokens=len(ids), truncated=not ended, token_ids=tuple(ids),
                         prompt_ids=prompt_ids) for ids, ended in zip(ids_per, ended_per)]
        completions.append(cs * n if greedy else cs)
        token_ids.append(ids_per * n if greedy else ids_per)
    return completions, token_ids


# ---------------------------------------------------------------------------------------------- engine


@dataclass
class VLLMModel:
    """An offline vLLM engine and what the backend needs besides it (the ``model`` of ``generate``)."""

    llm: Any
    model_dir: str
    stop_ids: list[int]


def load(model_dir, vcfg=None, *, max_pixels: int | None = None, trust_remote_code: bool | None = None,
         seed: int = 0):
    """``(VLLMModel, processor)`` for a model folder: a ``vllm.LLM`` built from ``VLLMConfig`` ``vcfg``.

    The processor (transformers ``AutoProcessor``) renders the chat template and decodes the ids;
    ``max_pixels`` (study config ``prompt.max_pixels``) caps each image's pixels in vLLM.
    """
    from transformers import AutoProcessor

    from synergy.models import trust_remote_code_default

    vllm = import_vllm()
    vcfg = as_vllm_config(vcfg)
    trust = trust_remote_code_default() if trust_remote_code is None else trust_remote_code
    processor = AutoProcessor.from_pretrained(str(model_dir), trust_remote_code=trust)
    kwargs = engine_kwargs(model_dir, vcfg, max_pixels=max_pixels, seed=seed, trust_remote_code=trust)
    log.info("vLLM %s engine: %s", getattr(vllm, "__version__", "?"),
             {k: v for k, v in kwargs.items() if k != "model"})
    llm = vllm.LLM(**kwargs)
    return VLLMModel(llm=llm, model_dir=str(model_dir), stop_ids=stop_token_ids(model_dir, processor.tokenizer)), \
        processor


def _generate_raw(llm, processor, prompts: Sequence[Prompt], cfg: SamplingConfig, stop_ids: Sequence[int],
                  suppress_ids: Sequence[int] = ()) -> list:
    from vllm import SamplingParams

    requests = build_requests(processor, prompts)
    params = [SamplingParams(**sampling_params_kwargs(cfg, stop_ids, seed=request_seed(cfg.seed, i),
                                                      suppress_ids=suppress_ids)) for i in range(len(prompts))]
    outputs = llm.generate(requests, params, use_tqdm=False)
    if len(outputs) != len(prompts):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
    return outputs


def generate(model: VLLMModel, processor, prompts: Sequence[Prompt], cfg: SamplingConfig,
             progress: Callable[[int, int], None] | None = None) -> list[list[Completion]]:
    """Sample ``cfg.n`` completions for every prompt with vLLM; ``out[i][j]`` is sample j of prompts[i]."""
    prompts = list(prompts)
    if not prompts:
        return []
    t0 = time.perf_counter()
    outputs = _generate_raw(model.llm, processor, prompts, cfg, model.stop_ids)
    completions, _ = completions_from_outputs(outputs, cfg.n, processor.tokenizer, model.stop_ids,
                                              greedy=cfg.temperature == 0)
    dt = time.perf_counter() - t0
    total = sum(c.num_tokens for cs in completions for c in (cs[:1] if cfg.temperature == 0 else cs))
    log.info("vllm: %d prompts x %d samples, %d generated tokens in %.2fs (%.0f tok/s)", len(prompts), cfg.n, total,
             dt, total / max(dt, 1e-9))
    if progress is not None:
        progress(len(prompts), len(prompts))
    return completions


# ---------------------------------------------------------------------------------------------- GRPO


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trainable_weights(model) -> Iterable[tuple[str, Any]]:
    """``(name, full tensor)`` of every parameter that trains; ZeRO-3 shards are gathered one at a time.

    The tensor is only valid until the next item is requested (a gathered ZeRO-3 parameter is
    released again), so consume each before asking for the next.
    """
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if hasattr(p, "ds_id"):  # DeepSpeed ZeRO-3 partitioned parameter
            import deepspeed

            with deepspeed.zero.GatheredParameters([p]):
                yield name, p.data
        else:
            yield name, p.data


def rollout_engine_kwargs(model_dir, vcfg, processor, *, process_index: int = 0, trust_remote_code: bool = False) -> dict:
    """Keyword arguments of the colocated GRPO rollout engine's ``vllm.LLM`` (TRL's colocate recipe).

    The trainer processor's pixel bounds, ``rollout_gpu_memory_utilization`` of the GPU, the
    ``external_launcher`` executor, seed ``process_index // tensor_parallel_size``, the
    ``WeightSync`` worker extension (weight updates by name through ``collective_rpc``) and
    ``rollout_max_num_batched_tokens`` (vLLM's per-step token budget: it bounds the activation
    memory of a step next to the trainer's states; it must hold one prompt's image tokens).
    """
    from synergy.generate.vllm_worker import WORKER_EXTENSION

    lo, hi = pixel_bounds(processor)
    extra: dict[str, Any] = {"gpu_memory_utilization": float(vcfg.rollout_gpu_memory_utilization),
                             "distributed_executor_backend": "external_launcher",
                             "worker_extension_cls": WORKER_EXTENSION}
    if vcfg.rollout_max_num_batched_tokens is not None:
        extra["max_num_batched_tokens"] = int(vcfg.rollout_max_num_batched_tokens)
    return engine_kwargs(model_dir, vcfg, max_pixels=hi, min_pixels=lo, seed=process_index // int(vcfg.tensor_parallel_size),
                         trust_remote_code=trust_remote_code, **extra)


class RolloutEngine:
    """An in-process vLLM engine for GRPO rollouts, colocated with the trainer; weights refreshed each step.

    ``sample`` has the contract of ``synergy.train.grpo.sampling.sample_groups`` (prompt ids, completion ids
    exactly as generated, decoded texts, ended flags, stop ids); ``load_weights(model)`` pushes the
    trainer's current parameters (call it after every optimiser step).
    """

    def __init__(self, model_dir, vcfg, processor, *, stop_ids: Sequence[int], suppress_ids: Sequence[int] = (),
                 process_index: int = 0, local_process_index: int = 0, num_processes: int = 1,
                 trust_remote_code: bool | None = None):
        from synergy.models import trust_remote_code_default

        vllm = import_vllm()
        vcfg = as_vllm_config(vcfg)
        tp = int(vcfg.tensor_parallel_size)
        if num_processes % tp:
            raise ValueError(f"vllm.tensor_parallel_size {tp} must divide the {num_processes} training processes")
        # external_launcher: vLLM's engine and worker live in this process and join the trainer's
        # torch.distributed world (TRL's colocate mode); it reads these variables when they are unset.
        for key, value in (("RANK", process_index), ("LOCAL_RANK", local_process_index),
                           ("WORLD_SIZE", num_processes), ("MASTER_ADDR", "127.0.0.1")):
            os.environ.setdefault(key, str(value))
        if "MASTER_PORT" not in os.environ:
            if num_processes > 1:
                raise RuntimeError("MASTER_PORT is not set in a multi-process run (accelerate sets it)")
            os.environ["MASTER_PORT"] = str(_free_port())
        trust = trust_remote_code_default() if trust_remote_code is None else trust_remote_code
        kwargs = rollout_engine_kwargs(model_dir, vcfg, processor, process_index=process_index, trust_remote_code=trust)
        log.info("GRPO rollouts on an in-process vLLM %s engine: %s", getattr(vllm, "__version__", "?"),
                 {k: v for k, v in kwargs.items() if k != "model"})
        self.llm = vllm.LLM(**kwargs)
        self.processor = processor
        self.stop_ids = [int(t) for t in stop_ids]
        self.suppress_ids = [int(t) for t in suppress_ids]
        self.pushes = 0

    def sample(self, processor, prompts: Sequence[Prompt], cfg, step_seed: int) -> dict:
        """G completions per prompt (``cfg``: GRPO settings) with the engine's current weights."""
        from synergy.generate.hf import encode_prompts

        G = cfg.num_generations
        sampling = SamplingConfig(n=G, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                  max_new_tokens=cfg.max_new_tokens, seed=int(step_seed))
        import torch

        # the trainer samples under its autocast context; vLLM runs its own dtypes in this thread
        with torch.autocast(device_type="cuda", enabled=False):
            outputs = _generate_raw(self.llm, processor, prompts, sampling, self.stop_ids, self.suppress_ids)
        completions, comp = completions_from_outputs(outputs, G, processor.tokenizer, self.stop_ids)
        ended = [[not c.truncated for c in cs] for cs in completions]
        return rollout_batch(processor, prompts, outputs, comp, ended, self.stop_ids, self.suppress_ids,
                             encode_prompts(processor, prompts))

    def load_weights(self, model) -> int:
        """Push the trainer's trainable parameters into the engine; returns how many were pushed."""
        import torch

        t0 = time.perf_counter()
        n = 0
        with torch.no_grad():
            for name, tensor in trainable_weights(model):
                self.llm.collective_rpc(LOAD_METHOD, args=([(name, tensor)],))
                n += 1
        self.llm.reset_prefix_cache()
        self.pushes += 1
        log.info("pushed %d parameters into the vLLM rollout engine in %.2fs", n, time.perf_counter() - t0)
        return n


def rollout_batch(processor, prompts: Sequence[Prompt], outputs: Sequence, comp: Sequence[Sequence[list[int]]],
                  ended: Sequence[Sequence[bool]], stop_ids: Sequence[int], suppress_ids: Sequence[int],
                  enc: Mapping) -> dict:
    """``grpo.sampling.sample_groups``'s dict from vLLM outputs; checks vLLM's prompt ids against the processor encoding ``enc``."""
    import torch

    mask = enc["attention_mask"].bool()
    prompt_ids = [enc["input_ids"][i][mask[i]].tolist() for i in range(len(prompts))]
    for i, (o, ids) in enumerate(zip(outputs, prompt_ids)):
        seen = [int(t) for t in (o.prompt_token_ids or [])]
        if seen != ids:
            raise RuntimeError(
                f"prompt {i}: vLLM's prompt token ids ({len(seen)}) differ from the trainer processor's encoding "
                f"({len(ids)}) of the same text and images; check that vLLM's mm_processor_kwargs (min/max_pixels) "
                "match the processor's and that both use the same tokenizer")
    comp_ids = [ids for per in comp for ids in per]
    bad = set(int(t) for t in suppress_ids) & {t for c in comp_ids for t in c}
    if bad:
        raise RuntimeError(f"a completion contains vision placeholder tokens {sorted(bad)} despite suppression")
    return {"prompt_ids": prompt_ids, "comp_ids": comp_ids,
            "texts": processor.tokenizer.batch_decode(comp_ids, skip_special_tokens=True),
            "ended": [bool(e) for per in ended for e in per], "stop": torch.tensor([int(t) for t in stop_ids])}
