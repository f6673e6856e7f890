"""synergy.models: tokenizer, processor, tiny model, save/load."""

from __future__ import annotations

import torch

from synergy.models import count_parameters, freeze_vision, load_model, save_model, vision_parameters
from synergy.tiny_model import QWEN_SPECIAL_TOKENS


def _messages(text="How many red squares are there?", image=True):
    content = [{"type": "text", "text": text}] + ([{"type": "image"}] if image else [])
    return [{"role": "user", "content": content}]


def test_special_token_ids(tiny_model_bundle):
    tok = tiny_model_bundle.tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS] == list(range(len(QWEN_SPECIAL_TOKENS)))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.padding_side == "left"
    cfg = tiny_model_bundle.model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.get_text_config().vocab_size % 64 == 0 and cfg.get_text_config().vocab_size >= len(tok)
    assert tiny_model_bundle.model.generation_config.eos_token_id == [2, 0]


def test_round_trip_identical_logits(tiny_model_bundle, tiny_loaded, test_images):
    model, processor = tiny_loaded
    text = processor.apply_chat_template(_messages(), tokenize=False, add_generation_prompt=True)
    enc = processor(text=[text], images=test_images[:1], return_tensors="pt")
    enc.pop("mm_token_type_ids", None)
    with torch.no_grad():
        a = tiny_model_bundle.model(**enc).logits
        b = model(**enc).logits
    assert torch.equal(a, b)
    assert not model.training and model.dtype == torch.float32


def test_auto_classes_load(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"


def test_chat_template_inserts_vision_tokens(tiny_loaded, test_images):
    _, processor = tiny_loaded
    text = processor.apply_chat_template(_messages(), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n")
    enc = processor(text=[text], images=test_images[:1], return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    tok = processor.tokenizer
    vs, pad, ve = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"))
    start = ids.index(vs)
    assert ids[start + 1 : start + 5] == [pad] * 4 and ids[start + 5] == ve  # 56 px -> 4 visual tokens
    assert ids.count(pad) == 4
    assert enc["image_grid_thw"].tolist() == [[1, 4, 4]] and enc["pixel_values"].shape == (16, 1176)


def test_think_tags_survive_decode(tiny_loaded):
    tok = tiny_loaded[1].tokenizer
    text = "<think> 2 + 3 = 5 </think> \\boxed{5}"
    ids = tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<think>") in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_freeze_vision_exactly_vision(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    before = count_parameters(model)
    n = freeze_vision(model)
    vision = {id(p) for p in vision_parameters(model)}
    assert n == before["vision"] > 0
    assert any("merger" in name for name, p in model.named_parameters() if id(p) in vision)
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) not in vision), name
        assert ("visual" in name) == (id(p) in vision), name
    after = count_parameters(model)
    assert after["trainable"] == before["total"] - n and after["total"] == before["total"]


def test_safetensors_only(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not [x for x in names if x.endswith((".bin", ".pt", ".pth", ".pkl"))]


def test_save_is_atomic_and_replaces(tiny_model_bundle, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    save_model(tiny_model_bundle.model, tiny_model_bundle.processor, out)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary or old folder left
    model, processor = load_model(out)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"


def test_initializer_range_sets_the_text_weights_only(tiny_model_bundle):
    """base_model.tiny.initializer_range is the std of the text model's initial weights; the vision tower keeps Qwen's."""
    from synergy.tiny_model import TinyModelConfig, build_tiny_model

    stds = {}
    for r in (0.02, 0.088):
        model = build_tiny_model(TinyModelConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128,
                                                 vision_depth=1, vision_hidden_size=32, vision_heads=2, vision_intermediate_size=64,
                                                 initializer_range=r), tiny_model_bundle.tokenizer)
        p = dict(model.named_parameters())
        stds[r] = {k: float(p[k].detach().std()) for k in p if k.endswith("q_proj.weight") or k.endswith("embed_tokens.weight")
                   or k == "lm_head.weight" or k.endswith("attn.qkv.weight")}
    for k, s in stds[0.088].items():
        expected = 0.02 if "visual" in k else 0.088
        assert abs(s - expected) < 0.15 * expected, (k, s)
        if "visual" not in k:
            assert abs(stds[0.02][k] - 0.02) < 0.003, (k, stds[0.02][k])
