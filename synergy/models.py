"""Loading and saving of Hugging Face model folders, and the tiny Qwen2.5-VL used by the embedded study.

Every model the pipeline touches lives in one folder in the Hub layout: the weights
(``model.safetensors``, never pickled ``.bin``), ``config.json``, ``generation_config.json`` and the
processor files (tokenizer, chat template, image and video processor settings). ``load_model`` reads
such a folder with ``AutoModelForImageTextToText`` and ``AutoProcessor``, so the tiny CPU model of
the embedded study goes through *the same loading code* as a Qwen2.5-VL-7B checkpoint on a GPU node.

The tiny model (``build_tiny_model``) is a real ``Qwen2_5_VLForConditionalGeneration`` with the
Qwen2.5-VL chat template and image processor (patch 14, 2x2 merge). Deviations from Qwen, all
recorded in docs/tiny-model.md with the measurements behind them:

* tiny sizes (about 2 M parameters instead of 8 B; text hidden 128, 4 layers, vision depth 2);
* a byte-level BPE tokenizer trained locally on the study's own text (``train_tokenizer``) with
  Qwen's pre-tokenizer regex and Qwen's special tokens, so token ids are small (``<|endoftext|>`` = 0,
  ``<|im_start|>`` = 1, ``<|im_end|>`` = 2, ...), never Qwen's 151k ids;
* images are resized to a fixed ``image_size`` square (``min_pixels = max_pixels``), 16 visual
  tokens at 112 px;
* the vision tower is not pretrained: it stays at its seeded random initialisation and is frozen
  (``freeze_vision``), together with the merger; paper §2.1 freezes the ViT and connector too.
  A trainable random tower collapses (docs/tiny-model.md §2).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("synergy.models")

# The special tokens of the Qwen2.5-VL tokenizer, in Qwen's id order (151643..151656 there;
# 0..13 in the tiny tokenizer).
QWEN_SPECIAL_TOKENS: list[str] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Tags of the long-CoT format; ordinary (non-special) added tokens so that decoding with
# skip_special_tokens=True keeps them.
THINK_TOKENS: list[str] = ["<think>", "</think>"]

# The chat template shipped with Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json), verbatim.
QWEN25VL_CHAT_TEMPLATE: str = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split pattern (digits one per token, newlines kept apart).
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
VOCAB_MULTIPLE = 64


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny Qwen2.5-VL (defaults: docs/tiny-model.md §1)."""

    vocab_size: int = 1024  # BPE target; final embedding size is padded to a multiple of 64
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    vision_depth: int = 2
    vision_hidden_size: int = 128
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    image_size: int = 112  # square; min_pixels = max_pixels = image_size**2 -> 16 visual tokens at 112
    max_position_embeddings: int = 4096
    seed: int = 0


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a byte-level BPE tokenizer in Qwen's style on ``corpus``.

    Qwen's pre-tokenizer regex and byte-level alphabet; the Qwen special tokens get ids 0..13;
    ``<think>``/``</think>`` are added as non-special tokens. eos ``<|im_end|>``, pad
    ``<|endoftext|>``, left padding, and the Qwen2.5-VL chat template. The vocabulary can end up
    smaller than ``vocab_size`` when the corpus has no more merges with frequency >= 2.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )
    for i, t in enumerate(QWEN_SPECIAL_TOKENS):
        assert hf_tok.convert_tokens_to_ids(t) == i, (t, hf_tok.convert_tokens_to_ids(t))
    return hf_tok


def build_processor(tokenizer, image_size: int):
    """A ``Qwen2_5_VLProcessor`` whose images are resized to ``image_size`` x ``image_size``.

    ``min_pixels = max_pixels = image_size**2`` (rounded by Qwen's smart_resize to multiples of 28
    for square inputs), patch 14, merge 2: ``(image_size / 28)**2`` visual tokens per image.
    """
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    if image_size % (PATCH_SIZE * MERGE_SIZE):
        raise ValueError(f"image_size must be a multiple of {PATCH_SIZE * MERGE_SIZE}, got {image_size}")
    pixels = image_size * image_size
    common = dict(
        min_pixels=pixels,
        max_pixels=pixels,
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
    )
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**common),
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen's [16, 24, 24] split of head_dim/2 (=64) scaled to a smaller head; must sum to head_dim/2."""
    half = head_dim // 2
    hw = 3 * half // 8
    return [half - 2 * hw, hw, hw]


def build_tiny_model(cfg: TinyModelConfig, tokenizer):
    """A randomly initialised (seeded) ``Qwen2_5_VLForConditionalGeneration`` for ``tokenizer``.

    All special token ids (image pad, vision start/end, eos, pad) are looked up in ``tokenizer``.
    The embedding size is ``len(tokenizer)`` rounded up to a multiple of 64.
    """
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if cfg.hidden_size % cfg.num_heads or cfg.vision_hidden_size % cfg.vision_heads:
        raise ValueError("hidden sizes must be divisible by the number of heads")
    head_dim = cfg.hidden_size // cfg.num_heads
    if head_dim % 4:
        raise ValueError(f"text head_dim {head_dim} must be a multiple of 4 (mrope)")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    eos_id, pad_id = ids["<|im_end|>"], ids["<|endoftext|>"]
    vocab = -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads,
            max_position_embeddings=cfg.max_position_embeddings,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": _mrope_section(head_dim)},
            bos_token_id=pad_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=cfg.vision_depth,
            hidden_size=cfg.vision_hidden_size,
            intermediate_size=cfg.vision_intermediate_size,
            num_heads=cfg.vision_heads,
            patch_size=PATCH_SIZE,
            spatial_merge_size=MERGE_SIZE,
            temporal_patch_size=TEMPORAL_PATCH_SIZE,
            window_size=112,  # Qwen's value (px); covers a whole 112 px image
            out_hidden_size=cfg.hidden_size,  # must equal the text hidden size
            fullatt_block_indexes=[cfg.vision_depth - 1],
            tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
        bos_token_id=pad_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
    )
    model.eval()
    return model


def _vision_module(model):
    """The vision tower (incl. its merger) of a Qwen2/2.5-VL model, wherever transformers keeps it."""
    for path in ("model.visual", "visual", "model.vision_tower", "vision_tower"):
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.Module):
            return obj
    raise AttributeError(f"no vision tower found on {type(model).__name__}")


def _connector_modules(model, visual) -> list[torch.nn.Module]:
    """Connector modules outside the vision tower (transformers keeps Qwen's merger inside it)."""
    out = []
    for name in ("model.multi_modal_projector", "multi_modal_projector", "model.merger", "merger"):
        obj = model
        for attr in name.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.Module) and obj is not visual and not any(obj is o for o in out):
            out.append(obj)
    return out


def vision_parameters(model) -> list[torch.nn.Parameter]:
    """Parameters of the vision tower and the vision-language connector (merger)."""
    visual = _vision_module(model)
    params = {id(p): p for p in visual.parameters()}
    for m in _connector_modules(model, visual):
        params.update({id(p): p for p in m.parameters()})
    return list(params.values())


def freeze_vision(model) -> int:
    """Freeze the vision tower and the merger (paper §2.1: ViT and connector frozen).

    Returns the number of frozen parameters (elements).
    """
    visual = _vision_module(model)
    if not hasattr(visual, "merger") and not _connector_modules(model, visual):
        raise AttributeError("vision merger/connector not found; refusing to freeze only part of the vision path")
    visual.requires_grad_(False)
    for m in _connector_modules(model, visual):
        m.requires_grad_(False)
    n = sum(_numel(p) for p in vision_parameters(model))
    log.info("froze %d vision parameters (tower + merger)", n)
    return n


def save_model(model, processor, out_dir: str | Path, extra_files: Mapping[str, str] | None = None,
               state_dict: Mapping[str, torch.Tensor] | None = None) -> None:
    """Save model and processor into one folder (safetensors only), atomically.

    ``state_dict`` (module names -> tensors) replaces the model's own weights in the files (e.g. a
    copy in another dtype); the Hub key names are written as for the model itself.

    Everything is written to a temporary sibling folder which is then renamed into place; an
    existing ``out_dir`` is replaced (moved aside first, deleted after the rename).
    ``extra_files`` (name -> text, e.g. a training summary) are written into the folder before the
    rename, so the folder never appears without them. Running out of space raises ``DiskFull``
    naming the folder and the space needed; the previous folder stays whole.
    """
    from synergy.io import disk_full_guard, folder_bytes, share_tree

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{token}"
    old = out_dir.parent / f".{out_dir.name}.old-{token}"
    needed = folder_bytes(out_dir) or sum(p.numel() * p.element_size() for p in model.parameters()) + 10 * 2**20
    kept = f"The previous {out_dir} is whole." if out_dir.exists() else f"No {out_dir} was written."
    try:
        with disk_full_guard(out_dir.parent, needed, f"the model folder {out_dir.name}", kept,
                             cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True)):
            model.save_pretrained(tmp, state_dict=dict(state_dict) if state_dict is not None else None)
            processor.save_pretrained(tmp)
            for name, text in (extra_files or {}).items():
                if Path(name).name != name:
                    raise ValueError(f"extra file name {name!r} must be a plain file name")
                (tmp / name).write_text(text)
        pickled = sorted(p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
        if pickled:
            raise RuntimeError(f"non-safetensors weight files written: {pickled}")
        share_tree(tmp)  # the modes of new files under the umask: a team folder's group can read the weights
        if out_dir.exists():
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if old.exists() and not out_dir.exists():
                os.replace(old, out_dir)  # put the previous version back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def default_dtype(device: str) -> torch.dtype:
    """float32 on CPU, bfloat16 on CUDA."""
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


TRUST_REMOTE_CODE_ENV = "SYNERGY_TRUST_REMOTE_CODE"
"""Set to "1" / "0" by the workflow (rules/common.smk) from the config's ``base_model.trust_remote_code``."""


def set_job_trust_remote_code(value: bool | None) -> None:
    """A job's own ``trust_remote_code`` (an external arm's, docs/scorecard.md); None keeps the job environment's."""
    if value is not None:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1" if value else "0"


def trust_remote_code_default() -> bool:
    """The workflow's ``base_model.trust_remote_code`` as passed to jobs (``SYNERGY_TRUST_REMOTE_CODE``); False if unset."""
    return os.environ.get(TRUST_REMOTE_CODE_ENV, "0").strip().lower() in ("1", "true")


def load_model(path, device: str = "cpu", dtype: torch.dtype | None = None, trust_remote_code: bool | None = None,
               max_pixels: int | None = None):
    """Load ``(model, processor)`` from a Hub-layout folder (or Hub id) in eval mode.

    ``max_pixels`` (study config ``prompt.max_pixels``) caps each image's pixels in the processor
    (``cap_pixels``), so training, hf rollouts and evaluation resize images alike.

    Uses ``AutoModelForImageTextToText`` and ``AutoProcessor`` with safetensors only (a folder
    with only pickled ``.bin`` weights fails; nothing is unpickled); the dtype defaults to float32
    on CPU and bfloat16 on CUDA. ``trust_remote_code`` (run Python code shipped with the checkpoint)
    defaults to the study config's ``base_model.trust_remote_code``, which the workflow hands to
    every job (``trust_remote_code_default``), and is off unless that turns it on.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if trust_remote_code is None:
        trust_remote_code = trust_remote_code_default()
    log.info("loading %s (safetensors only, trust_remote_code=%s)", path, trust_remote_code)
    dtype = dtype or default_dtype(device)
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    _keep_used_weight_conversions(model)
    model.to(device)
    model.eval()
    processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    cap_pixels(processor, max_pixels)
    return model, processor


def cap_pixels(processor, max_pixels: int | None) -> None:
    """Set the image processor's pixel bound to ``max_pixels`` (no-op for None; the minimum follows if above it).

    Qwen2-VL's processor resizes every image to at most ``size["longest_edge"]`` pixels (its
    ``max_pixels``; default 12,845,056) and at least ``size["shortest_edge"]``. The same bound goes
    to vLLM's ``mm_processor_kwargs`` (``synergy.generate.vllm.pixel_bounds`` reads it back here).
    """
    if max_pixels is None:
        return
    improc = getattr(processor, "image_processor", None)
    size = getattr(improc, "size", None)
    if improc is None or size is None:
        raise ValueError(f"prompt.max_pixels={max_pixels} is set but the processor {type(processor).__name__} has no "
                         "image processor with a size bound")
    get = size.get if hasattr(size, "get") else (lambda k: getattr(size, k, None))
    lo = get("shortest_edge") or getattr(improc, "min_pixels", None) or 0
    improc.size = {"shortest_edge": int(min(lo, max_pixels)), "longest_edge": int(max_pixels)}
    for attr, value in (("min_pixels", min(lo, max_pixels)), ("max_pixels", max_pixels)):
        if getattr(improc, attr, None) is not None:
            setattr(improc, attr, int(value))


def _keep_used_weight_conversions(model) -> None:
    """Keep only the key renamings that matched the checkpoint, as a normal load does.

    Under DeepSpeed ZeRO-3 transformers 5.23 loads through ``_load_state_dict_into_zero3_model``,
    which attaches *every* renaming of the model type to ``model._weight_conversions``; reverting the
    unused ones on ``save_pretrained`` then writes keys like ``model.model.embed_tokens.weight``.
    """
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if not hasattr(c, "was_used") or c.was_used()]


def _numel(p) -> int:
    """Elements of a parameter; under DeepSpeed ZeRO-3 the full size (``ds_numel``), not the local shard."""
    return int(getattr(p, "ds_numel", p.numel()))


def count_parameters(model) -> dict:
    """Parameter counts (elements): ``total``, ``trainable`` and ``vision`` (tower + merger)."""
    return {
        "total": sum(_numel(p) for p in model.parameters()),
        "trainable": sum(_numel(p) for p in model.parameters() if p.requires_grad),
        "vision": sum(_numel(p) for p in vision_parameters(model)),
    }
