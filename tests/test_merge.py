"""Model merging (paper §3.3): the methods against hand-computed tensors, and whole checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from synergy.merge import (
    MergeError,
    MergeSettings,
    SafetensorsReader,
    StreamingSafetensorsWriter,
    canonical_key,
    linear,
    merge_models,
    merge_tensor,
    slerp,
    ties,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


# ------------------------------------------------------------------ methods on tensors


def test_linear_by_hand():
    assert torch.allclose(linear(t(0, 2), t(4, 6), 0.25), t(1, 3))


def test_slerp_endpoints_and_middle():
    a, b = t(1, 0), t(0, 1)
    out0, fb0 = slerp(a, b, 0.0)
    out1, fb1 = slerp(a, b, 1.0)
    mid, fb = slerp(a, b, 0.5)
    assert not (fb0 or fb1 or fb)
    assert torch.allclose(out0, a) and torch.allclose(out1, b)
    s = math.sin(math.pi / 4)  # omega = pi/2: weights sin(pi/4)/sin(pi/2)
    assert torch.allclose(mid, t(s, s), atol=1e-6)


def test_slerp_unnormalised_tensors_keep_their_scale():
    a, b = t(2, 0), t(0, 4)
    mid, _ = slerp(a, b, 0.5)
    s = math.sin(math.pi / 4)
    assert torch.allclose(mid, t(2 * s, 4 * s), atol=1e-6)


def test_slerp_nearly_parallel_falls_back_to_linear():
    a, b = t(1, 2), t(2, 4.0000001)
    out, fell_back = slerp(a, b, 0.5)
    assert fell_back
    assert torch.allclose(out, t(1.5, 3.0))


def test_ties_trim_elect_disjoint_mean_by_hand():
    base = t(0, 0, 0, 0)
    rl = t(1, -2, 3, 0.5)       # trimmed to its 2 largest: [0, -2, 3, 0]
    sft = t(-4, 1.5, 1, 0.1)    # trimmed: [-4, 1.5, 0, 0]
    # weighted sum (0.5 each): [-2, -0.25, 1.5, 0] -> signs [-, -, +, 0]; agreeing entries only
    out = ties(base, [rl, sft], [0.5, 0.5], density=0.5)
    assert torch.allclose(out, t(-4, -2, 3, 0))


def test_ties_agreeing_entries_average_with_weights_and_scale():
    base = t(1, 1, 1)
    rl, sft = t(4, 1, 0), t(2, 3, 1)  # deltas [3, 0, -1] and [1, 2, 0]
    # signs of 0.5*[3,0,-1] + 0.5*[1,2,0] = [2, 1, -0.5]: [+, +, -]
    # entry 0: both agree -> (1.5 + 0.5) / 1 = 2; entry 1: only sft -> 2; entry 2: only rl -> -1
    assert torch.allclose(ties(base, [rl, sft], [0.5, 0.5], density=1.0), t(3, 3, 0))
    assert torch.allclose(ties(base, [rl, sft], [0.5, 0.5], density=1.0, scale=0.5), t(2, 2, 0.5))
    # unequal weights: entry 0 -> (0.75*3 + 0.25*1) / 1 = 2.5
    assert torch.allclose(ties(base, [rl, sft], [0.75, 0.25], density=1.0), t(3.5, 3, 0))


@pytest.mark.parametrize("method", ["linear", "ties", "slerp"])
@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_endpoints_return_the_parents_exactly(method, ratio):
    g = torch.Generator().manual_seed(0)
    rl, sft, base = (torch.randn(5, 7, generator=g) for _ in range(3))
    out = merge_tensor(rl, sft, MergeSettings(method, ratio), base=base)
    assert torch.equal(out, rl if ratio == 0.0 else sft)


def test_merge_tensor_keeps_dtype_and_rejects_shape_mismatch():
    a, b = torch.ones(3, dtype=torch.bfloat16), torch.zeros(3, dtype=torch.bfloat16)
    assert merge_tensor(a, b, MergeSettings("linear", 0.5)).dtype == torch.bfloat16
    with pytest.raises(MergeError, match="shapes differ"):
        merge_tensor(torch.ones(3), torch.ones(4), MergeSettings("linear", 0.5), name="w")
    with pytest.raises(MergeError, match="must be one of"):
        MergeSettings("dare", 0.5)


def test_canonical_key_maps_both_layouts():
    assert canonical_key("model.layers.0.mlp.up_proj.weight") == "model.language_model.layers.0.mlp.up_proj.weight"
    assert canonical_key("visual.blocks.0.attn.qkv.weight") == "model.visual.blocks.0.attn.qkv.weight"
    assert canonical_key("model.language_model.norm.weight") == "model.language_model.norm.weight"
    assert canonical_key("lm_head.weight") == "lm_head.weight"


# ------------------------------------------------------------------ safetensors streaming


def test_streaming_writer_round_trips_with_the_reference_reader(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(6, dtype=torch.int64), "c": torch.randn(2).to(torch.bfloat16),
               "s": torch.tensor(1.5)}
    w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()])
    for k, v in tensors.items():
        w.write(k, v)
    w.close()
    ref = load_file(tmp_path / "x.safetensors")
    mine = SafetensorsReader(tmp_path / "x.safetensors")
    for k, v in tensors.items():
        assert torch.equal(ref[k], v) and torch.equal(mine.get(k), v)


def test_streaming_writer_leaves_no_file_when_incomplete(tmp_path):
    w = StreamingSafetensorsWriter(tmp_path / "x.safetensors", [("a", torch.float32, (2,)), ("b", torch.float32, (2,))])
    w.write("a", torch.zeros(2))
    with pytest.raises(MergeError, match="never written"):
        w.close()
    w.abort()
    assert not (tmp_path / "x.safetensors").exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------ whole checkpoints


def _write_model(folder, tensors, shards=1, extra=True):
    folder.mkdir(parents=True)
    keys = list(tensors)
    if shards == 1:
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        per = -(-len(keys) // shards)
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: tensors[k] for k in keys[i * per:(i + 1) * per]}
            save_file(part, folder / name, metadata={"format": "pt"})
            weight_map.update({k: name for k in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if extra:
        (folder / "config.json").write_text('{"model_type": "test"}')


def _params(prefix_lm="model.language_model.", prefix_vis="model.visual.", seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"{prefix_lm}layers.0.w": torch.randn(4, 3, generator=g), f"{prefix_lm}norm.weight": torch.randn(3, generator=g),
            f"{prefix_vis}blocks.0.w": torch.randn(2, 2, generator=g), "lm_head.weight": torch.randn(5, 3, generator=g)}


@pytest.mark.parametrize("method", ["linear", "ties", "slerp"])
def test_merge_models_matches_tensor_math_across_layouts_and_shards(tmp_path, method):
    rl = _params(seed=1)
    sft_new = _params(seed=2)
    base = _params(seed=3)
    # the SFT parent is saved in the older layout (model.layers.*, visual.*), single file
    sft_old = {k.replace("model.language_model.", "model.").replace("model.visual.", "visual."): v for k, v in sft_new.items()}
    _write_model(tmp_path / "rl", rl, shards=2)
    _write_model(tmp_path / "sft", sft_old, shards=1)
    _write_model(tmp_path / "base", base, shards=1)
    settings = MergeSettings(method, 0.25, density=0.5)
    summary = merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "out", settings, base_dir=tmp_path / "base")
    out = {}
    for f in (tmp_path / "out").glob("*.safetensors"):
        out.update(load_file(f))
    assert set(out) == set(rl)  # the RL parent's names and shard layout
    assert (tmp_path / "out" / "model.safetensors.index.json").exists() and (tmp_path / "out" / "config.json").exists()
    for k in rl:
        want = merge_tensor(rl[k], sft_new[k], settings, base=base[k])
        assert torch.allclose(out[k], want, atol=1e-6), k
    assert summary["tensors"] == 4 and summary["method"] == method


def test_merge_models_endpoint_reproduces_parent_bytes(tmp_path):
    rl, sft = _params(seed=1), _params(seed=2)
    _write_model(tmp_path / "rl", rl)
    _write_model(tmp_path / "sft", sft)
    merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "r1", MergeSettings("ties", 1.0))
    merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "r0", MergeSettings("slerp", 0.0))
    one, zero = load_file(tmp_path / "r1" / "model.safetensors"), load_file(tmp_path / "r0" / "model.safetensors")
    assert all(torch.equal(one[k], sft[k]) for k in sft)
    assert all(torch.equal(zero[k], rl[k]) for k in rl)


def test_merge_models_slerp_fallback_is_counted(tmp_path):
    rl = _params(seed=1)
    sft = {k: v * 2 for k, v in rl.items()}  # every tensor parallel to the RL one
    _write_model(tmp_path / "rl", rl)
    _write_model(tmp_path / "sft", sft)
    s = merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "out", MergeSettings("slerp", 0.5))
    assert s["slerp_linear_fallbacks"] == 4
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert all(torch.allclose(out[k], 1.5 * rl[k]) for k in rl)


def test_merge_models_errors_name_the_problem(tmp_path):
    rl = _params(seed=1)
    sft = _params(seed=2)
    sft.pop("lm_head.weight")
    _write_model(tmp_path / "rl", rl)
    _write_model(tmp_path / "sft", sft)
    with pytest.raises(MergeError, match="only in RL \\['lm_head.weight'\\]"):
        merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "out", MergeSettings("linear", 0.5))
    with pytest.raises(MergeError, match="needs base_dir"):
        merge_models(tmp_path / "rl", tmp_path / "rl", tmp_path / "out", MergeSettings("ties", 0.5))
    (tmp_path / "pkl").mkdir()
    (tmp_path / "pkl" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(MergeError, match="pickle"):
        merge_models(tmp_path / "pkl", tmp_path / "rl", tmp_path / "out", MergeSettings("linear", 0.5))
    assert not (tmp_path / "out").exists()


def test_merged_tiny_model_loads_and_interpolates(tiny_model_bundle, tmp_path):
    """Two real tiny Qwen2.5-VL folders merge into a folder that loads with from_pretrained."""
    from synergy.models import load_model, save_model

    model, processor = load_model(tiny_model_bundle.path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    save_model(model, processor, tmp_path / "shifted")
    merge_models(tiny_model_bundle.path, tmp_path / "shifted", tmp_path / "merged", MergeSettings("linear", 0.5))
    merged, _ = load_model(tmp_path / "merged")
    original, _ = load_model(tiny_model_bundle.path)
    for (name, p0), p1 in zip(original.named_parameters(), merged.parameters()):
        assert torch.allclose(p1, p0 + 0.05, atol=1e-5), name


@pytest.mark.parametrize("method", ["linear", "ties", "slerp"])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_chunked_merge_equals_whole_tensor_merge(tmp_path, method, ratio):
    """Tensors larger than chunk_bytes are merged in chunks of rows: same result as merge_tensor."""
    g = torch.Generator().manual_seed(7)
    rl = {"model.language_model.layers.0.w": torch.randn(37, 11, generator=g).to(torch.bfloat16),
          "model.language_model.norm.weight": torch.randn(11, generator=g).to(torch.bfloat16)}
    sft = {k: (v.float() + 0.3 * torch.randn(v.shape, generator=g)).to(torch.bfloat16) for k, v in rl.items()}
    base = {k: (v.float() - 0.2 * torch.randn(v.shape, generator=g)).to(torch.bfloat16) for k, v in rl.items()}
    for name, ts in (("rl", rl), ("sft", sft), ("base", base)):
        _write_model(tmp_path / name, ts)
    settings = MergeSettings(method, ratio, density=0.4)
    merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "out", settings, base_dir=tmp_path / "base",
                 chunk_bytes=4 * 11 * 5)  # 5 rows per chunk: the 37-row tensor takes 8 chunks
    out = load_file(tmp_path / "out" / "model.safetensors")
    for k in rl:
        want = merge_tensor(rl[k], sft[k], settings, base=base[k])
        assert out[k].dtype == torch.bfloat16
        assert torch.allclose(out[k].float(), want.float(), atol=1e-2, rtol=0), k
        assert (out[k] != want).float().mean() < 0.01  # bf16 rounding of float sums in a different order, at most


def test_trim_threshold_keeps_the_top_share():
    from synergy.merge import trim_threshold

    mags = t(0.1, 4, 1.5, 1, 2)
    assert trim_threshold(mags, 0.4) == 2.0        # keep the top 2 of 5: 4 and 2
    assert trim_threshold(mags, 1.0) == 0.0
    assert trim_threshold(mags, 0.05) == math.inf  # round(0.25) = 0 entries survive


@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 0.77, 1.0])
def test_in_place_threshold_is_the_exact_kth_value(density):
    from synergy.merge import trim_threshold

    g = torch.Generator().manual_seed(7)
    mags = torch.randn(10_001, generator=g).abs()
    mags[::97] = mags[5]  # ties at many values
    expected = trim_threshold(mags.clone(), density)
    scratch = mags.clone()
    assert trim_threshold(scratch, density, in_place=True) == expected
    assert sorted(scratch.tolist()) == sorted(mags.tolist())  # reordered, nothing lost


@pytest.mark.parametrize("density", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_streamed_threshold_equals_the_whole_tensor_threshold(density):
    """The radix selection over chunks (histogram of the top bits, then one bucket) finds trim_threshold's value."""
    from synergy.merge.methods import (bucket_values, magnitude_histogram, threshold_bucket, threshold_from_histogram,
                                       trim_threshold)

    g = torch.Generator().manual_seed(0)
    mags = (torch.randn(10_000, generator=g) * 0.01).abs()
    mags[:3000] = mags[:3000].to(torch.bfloat16).float()  # many exact ties, as bf16 task vectors have
    chunks = mags.split(1234)
    where = threshold_bucket(sum(magnitude_histogram(c) for c in chunks), density)
    if isinstance(where, float):
        got = where
    else:
        got = threshold_from_histogram(torch.cat([bucket_values(c, where[0]) for c in chunks]), where[1])
    assert got == trim_threshold(mags.clone(), density)


@pytest.mark.parametrize("method", ["linear", "ties", "slerp"])
def test_chunked_float32_merge_in_scratch_buffers_is_exact(tmp_path, method):
    """float32 parents (no cast on output, so a unit's result must not alias its thread's scratch buffers), many
    chunks on 2 threads: every chunk equals merge_tensor on the whole tensor, exactly for linear and TIES."""
    g = torch.Generator().manual_seed(11)
    rl = {"model.language_model.layers.0.w": torch.randn(64, 9, generator=g),
          "model.language_model.layers.1.w": torch.randn(33, 9, generator=g)}
    sft = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in rl.items()}
    base = {k: v - 0.2 * torch.randn(v.shape, generator=g) for k, v in rl.items()}
    for name, ts in (("rl", rl), ("sft", sft), ("base", base)):
        _write_model(tmp_path / name, ts)
    settings = MergeSettings(method, 0.3, density=0.4)
    merge_models(tmp_path / "rl", tmp_path / "sft", tmp_path / "out", settings, base_dir=tmp_path / "base",
                 chunk_bytes=4 * 9 * 3, threads=2)  # 3 rows per chunk: 22 and 11 chunks
    out = load_file(tmp_path / "out" / "model.safetensors")
    for k in rl:
        want = merge_tensor(rl[k], sft[k], settings, base=base[k])
        assert out[k].dtype == torch.float32
        if method == "slerp":   # the angle's sums run in another order
            assert torch.allclose(out[k], want, atol=1e-6, rtol=1e-6), k
        else:
            assert torch.equal(out[k], want), k
