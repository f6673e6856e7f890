"""The tiny Qwen2.5-VL of the embedded study: its tokenizer, processor and model (paper §2.1's Qwen2.5-VL-7B, shrunk).

``build_tiny_model`` makes a real ``Qwen2_5_VLForConditionalGeneration`` with the Qwen2.5-VL chat template
and image processor (patch 14, 2x2 merge), saved and loaded by synergy.models like any Hub checkpoint.
Deviations from Qwen, all recorded in docs/tiny-model.md with the measurements behind them:

* tiny sizes (about 2 M parameters instead of 8 B; text hidden 128, 4 layers, vision depth 2);
* a byte-level BPE tokenizer trained locally on the study's own text (``train_tokenizer``) with
  Qwen's pre-tokenizer regex and Qwen's special tokens, so token ids are small (``<|endoftext|>`` = 0,
  ``<|im_start|>`` = 1, ``<|im_end|>`` = 2, ...), never Qwen's 151k ids;
* images are resized to a fixed ``image_size`` square (``min_pixels = max_pixels``), 16 visual
  tokens at 112 px;
* RoPE base 1e4 and Qwen's M-RoPE split scaled to the small head (``_mrope_section``).

The vision tower starts at its seeded random initialisation; synergy/vision_pretrain.py may first fit it
to a code of each cell's content, and synergy.models.freeze_vision then freezes it with the merger for every
stage (paper §2.1 freezes the ViT and connector too; a trainable tower collapses, docs/tiny-model.md §2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from synergy.config import TinyModelSettings

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
class TinyModelConfig(TinyModelSettings):
    """The sizes of the config section ``base_model.tiny`` (defaults: docs/tiny-model.md §1) plus the image size.

    ``initializer_range`` is the std of the text model's initial weights; Qwen's 0.02 is about 1/sqrt(hidden) at
    3584 (docs/embedded-study.md §9). The vocabulary is padded to a multiple of 64.
    """

    image_size: int = 112  # square; min_pixels = max_pixels = image_size**2 -> 16 visual tokens at 112


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
            initializer_range=cfg.initializer_range,
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
