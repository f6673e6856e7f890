"""Will it fit: the GPU memory each training and generation job of a study plans for (docs/gpu.md "Memory plan").

``python -m synergy.resources --configfile config/paper.yaml [--gpu-memory-gb 80]`` prints, per GPU
job, an estimate of the memory one of its GPUs needs against the GPU's memory (``--gpu-memory-gb``,
else ``$SYNERGY_GPU_MEMORY_GB``, else 80: the profile's A100/H100-80GB class; profiles/slurm names
the variable) and exits 1 when a job will not fit. Estimates, per GPU, in GiB (paper: silent on
hardware; the numbers follow the ZeRO paper's accounting and our trainers' code paths):

* **states** (training): bf16 weights + gradients and fp32 Adam (master, m, v): 16 bytes per
  trainable parameter and 2 per frozen one (the vision tower), divided over the job's GPUs as the
  ZeRO stage shards them (stage 1: optimiser; 2: + gradients; 3: + weights);
* **reference** (GRPO with ``kl_coef > 0``): bf16 weights, sharded under ZeRO-3, else whole;
* **activations**: per token of a micro-batch, with gradient checkpointing each layer's bf16 input
  (``2 h`` bytes) plus one layer's working set, without it every layer's; a layer's working set is
  taken as ``2 (12 h + 3 I)`` bytes per token (attention and SwiGLU MLP inputs; flash/SDPA
  attention keeps no score matrix);
* **logits**: the bf16 logits of every token (``2 V`` bytes) and, where a loss is taken, the fp32
  log-softmax and its gradient (``8 V``): SFT at every position, GRPO at the completion tokens;
* **vLLM** (GRPO with ``rollout_backend: vllm``): the colocated engine's
  ``rollout_gpu_memory_utilization`` share of the GPU;
* generation jobs: vLLM takes ``gpu_memory_utilization`` of the GPU and needs the bf16 weights plus
  the key/value cache of one ``max_model_len`` sequence inside it; the hf sampler needs the weights
  plus the key/value cache of ``max_batch_sequences`` sequences of prompt + ``max_new_tokens``;
* 3 GiB per GPU for the CUDA context and allocator slack.

Prompt length: ``max_pixels / 784`` image tokens per image (one per training question, up to
``vllm.limit_mm_per_prompt`` in evaluation) plus 1,024 text tokens. The architecture comes from the
model folder's ``config.json`` when it is local, else from ``KNOWN`` (the Qwen2.5-VL checkpoints the
paper uses). Checked against one measured case only when a GPU is lent (docs/gpu.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from synergy.config import GRPOSettings, SFTSettings, StudyConfig
from synergy.resources import rule_resources

GIB = 2**30
OVERHEAD_GIB = 3.0
TEXT_TOKENS = 1024
PIXELS_PER_TOKEN = 28 * 28
DEFAULT_GPU_GIB = 80.0
GPU_MEMORY_ENV = "SYNERGY_GPU_MEMORY_GB"

KNOWN = {  # config.json excerpts (Hugging Face model cards' config.json)
    "Qwen/Qwen2.5-VL-7B-Instruct": dict(hidden=3584, layers=28, intermediate=18944, heads=28, kv_heads=4,
                                        vocab=152064, tied=False, v_hidden=1280, v_depth=32, v_intermediate=3420),
    "Qwen/Qwen2.5-VL-32B-Instruct": dict(hidden=5120, layers=64, intermediate=27648, heads=40, kv_heads=8,
                                         vocab=152064, tied=False, v_hidden=1280, v_depth=32, v_intermediate=3456),
}


@dataclass(frozen=True)
class Arch:
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    v_hidden: int
    v_depth: int
    v_intermediate: int

    @property
    def vision_params(self) -> int:  # patch embedding (3 x 2 x 14 x 14), ViT blocks, the 2x2 patch merger
        block = 4 * self.v_hidden**2 + 3 * self.v_hidden * self.v_intermediate
        merged = 4 * self.v_hidden
        return 3 * 2 * 14 * 14 * self.v_hidden + self.v_depth * block + merged * merged + merged * self.hidden

    @property
    def text_params(self) -> int:
        kv = self.hidden // self.heads * self.kv_heads
        layer = 2 * self.hidden**2 + 2 * self.hidden * kv + 3 * self.hidden * self.intermediate
        return self.layers * layer + self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def kv_bytes_per_token(self) -> int:  # bf16 keys and values of every layer
        return 2 * self.layers * self.kv_heads * (self.hidden // self.heads) * 2


def arch_of(path: str | None, local_path: str | None) -> Arch:
    """The architecture of a model: its local ``config.json`` (text_config / vision_config), else ``KNOWN``."""
    cfg_file = Path(local_path) / "config.json" if local_path else None
    if cfg_file is not None and cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        t, v = cfg.get("text_config") or cfg, cfg.get("vision_config") or {}
        return Arch(hidden=t["hidden_size"], layers=t["num_hidden_layers"], intermediate=t["intermediate_size"],
                    heads=t["num_attention_heads"], kv_heads=t.get("num_key_value_heads", t["num_attention_heads"]),
                    vocab=t["vocab_size"], tied=bool(cfg.get("tie_word_embeddings", t.get("tie_word_embeddings"))),
                    v_hidden=v.get("hidden_size", 0), v_depth=v.get("depth", 0),
                    v_intermediate=v.get("intermediate_size", 0))
    if path in KNOWN:
        return Arch(**KNOWN[path])
    raise ValueError(f"no architecture for model {path!r}: set its local_path to a folder with config.json "
                     f"(known without one: {sorted(KNOWN)})")


@dataclass(frozen=True)
class Plan:
    job: str
    gpus: int
    parts: dict  # name -> GiB per GPU
    gpu_gib: float
    problem: str | None = None  # a reason it cannot run even within the GPU (vLLM's own budget)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_gib and self.problem is None


def _states(a: Arch, stage: int | None, n: int, freeze_vision: bool) -> float:
    frozen = a.vision_params if freeze_vision else 0
    t = a.text_params + a.vision_params - frozen
    stage = stage or 0
    per_t = {0: 16, 1: 4 + 12 / n, 2: 2 + 14 / n, 3: 16 / n}[min(stage, 3)]
    return (t * per_t + frozen * (2 / n if stage == 3 else 2)) / GIB


def _activations(a: Arch, tokens: int, checkpointing: bool) -> float:
    layer = 2 * (12 * a.hidden + 3 * a.intermediate)
    per_token = a.layers * 2 * a.hidden + layer if checkpointing else a.layers * layer
    return tokens * per_token / GIB


def prompt_tokens(max_pixels: int | None, images: int) -> int:
    pixels = max_pixels if max_pixels is not None else 12845056  # Qwen2.5-VL's processor default
    return images * (pixels // PIXELS_PER_TOKEN) + TEXT_TOKENS


def plan_sft(name: str, a: Arch, s: SFTSettings, gpus: int, gpu_gib: float, max_pixels) -> Plan:
    tokens = s.micro_batch_size * s.max_length
    return Plan(f"train_sft {name}", gpus, {
        "states": _states(a, s.deepspeed_stage, gpus, s.freeze_vision),
        "activations": _activations(a, tokens, True),  # SFT checkpoints on CUDA (sft_trainer)
        "logits": tokens * a.vocab * 10 / GIB, "overhead": OVERHEAD_GIB}, gpu_gib)


def plan_grpo(name: str, a: Arch, s: GRPOSettings, gpus: int, gpu_gib: float, max_pixels, vllm_share: float) -> Plan:
    seq = prompt_tokens(max_pixels, 1) + s.max_new_tokens
    tokens = s.micro_batch_size * seq
    parts = {"states": _states(a, s.deepspeed_stage, gpus, s.freeze_vision),
             "reference": (2 * (a.text_params + a.vision_params) / (gpus if s.deepspeed_stage == 3 else 1) / GIB
                           if s.kl_coef > 0 else 0.0),
             "activations": _activations(a, tokens, s.gradient_checkpointing),
             "logits": (tokens * a.vocab * 2 + s.micro_batch_size * s.max_new_tokens * a.vocab * 8) / GIB,
             "vllm": vllm_share * gpu_gib if s.rollout_backend == "vllm" else 0.0, "overhead": OVERHEAD_GIB}
    return Plan(f"train_grpo {name}", gpus, parts, gpu_gib)


def plan_generation(job: str, a: Arch, backend: str, gpu_gib: float, *, util: float, max_model_len: int | None,
                    seq: int, batch: int) -> Plan:
    weights = 2 * (a.text_params + a.vision_params) / GIB
    if backend == "vllm":
        need = weights + a.kv_bytes_per_token * (max_model_len or seq) / GIB + 1.0
        problem = None if need <= util * gpu_gib else (f"weights + one sequence's cache {need:.1f} GiB > vLLM's "
                                                       f"budget {util * gpu_gib:.1f} GiB")
        return Plan(f"{job} (vllm)", 1, {"vllm_budget": util * gpu_gib, "overhead": OVERHEAD_GIB}, gpu_gib, problem)
    return Plan(f"{job} (hf)", 1, {"weights": weights, "kv_cache": batch * seq * a.kv_bytes_per_token / GIB,
                                   "logits": batch * a.vocab * 4 / GIB, "overhead": OVERHEAD_GIB}, gpu_gib)


def plan_study(study: StudyConfig, gpu_gib: float) -> list[Plan]:
    """The memory plan of every GPU job of ``study`` (training arms, then generation rules)."""
    raw, bm, px = study.raw, study.base_model, study.prompt.max_pixels
    if bm.source != "hf":
        raise ValueError("the memory plan is for studies on a Hugging Face model (base_model.source: hf); the tiny "
                         "model runs on CPUs")
    a = arch_of(bm.path, bm.local_path)
    plans: list[Plan] = []
    for arm in study.arms:
        if arm.kind in ("sft", "mixing"):
            gpus = max(1, rule_resources(raw, "train_sft").gpus)
            plans.append(plan_sft(arm.name, a, study.arm_settings(arm.name), gpus, gpu_gib, px))
        elif arm.kind == "grpo":
            gpus = max(1, rule_resources(raw, "train_grpo").gpus)
            plans.append(plan_grpo(arm.name, a, study.arm_settings(arm.name), gpus, gpu_gib, px,
                                   study.vllm.rollout_gpu_memory_utilization))
    v = study.vllm
    images = max(1, v.limit_mm_per_prompt)
    gen = [("sample_difficulty", study.difficulty.backend, study.difficulty.sampling, images)]
    if study.evaluation is not None:
        gen.append(("evaluate", study.evaluation.backend, study.evaluation.sampling, images))
    if study.mixing is not None:
        gen.append(("build_mixing_set", "hf", study.mixing.sampling, 1))
    for job, backend, sp, n_img in gen:
        seq = prompt_tokens(px, n_img) + sp.max_new_tokens
        plans.append(plan_generation(job, a, backend, gpu_gib, util=v.gpu_memory_utilization,
                                     max_model_len=v.max_model_len, seq=seq, batch=sp.max_batch_sequences))
    judge = raw.get("judge") or {}
    if judge.get("enabled"):
        m = judge.get("model") or {}
        ja = arch_of(m.get("path"), m.get("local_path"))
        plans.append(plan_generation("judge", ja, "vllm", gpu_gib, util=v.gpu_memory_utilization,
                                     max_model_len=v.max_model_len, seq=v.max_model_len or 32768, batch=1))
    return plans


def gpu_memory_gib(value: float | None = None) -> float:
    if value is not None:
        return float(value)
    return float(os.environ.get(GPU_MEMORY_ENV, DEFAULT_GPU_GIB))


def report(plans: list[Plan]) -> str:
    lines = [f"{'job':<44} {'gpus':>4} {'GiB/GPU':>8} {'of':>5}  fits  parts (GiB per GPU)"]
    for p in plans:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in p.parts.items() if v)
        lines.append(f"{p.job:<44} {p.gpus:>4} {p.total:>8.1f} {p.gpu_gib:>5.0f}  {'yes' if p.fits else 'NO ':<4}  "
                     f"{parts}" + (f"; {p.problem}" if p.problem else ""))
    bad = [p.job for p in plans if not p.fits]
    lines.append(f"{len(plans) - len(bad)} of {len(plans)} jobs fit" + (f"; will not fit: {', '.join(bad)}" if bad else ""))
    return "\n".join(lines)
