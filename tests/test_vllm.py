"""synergy.generate.vllm: the vllm backend's pure parts on CPU, its dispatch and config, and (marked
``gpu``, skipped without vLLM + CUDA) real generation and the GRPO weight refresh on a tiny model.

The CPU tests never import vLLM. ``_Out`` / ``_Sample`` stand in for vLLM's ``RequestOutput`` /
``CompletionOutput`` (vLLM's data, not the code under test) in the conversion tests only.
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from synergy.config import ConfigError, DifficultyConfig, EvalConfig, GRPOSettings, VLLMConfig, load_config_file
from synergy.generate import Completion, SamplingConfig, get_backend, hf
from synergy.generate import vllm as vb
from synergy.prompts import Prompt

ROOT = Path(__file__).resolve().parent.parent


def _has_vllm_and_cuda() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        importlib.import_module("vllm")
    except ImportError:
        return False
    return True


gpu_only = pytest.mark.skipif(not _has_vllm_and_cuda(), reason="needs vLLM 0.33 and a CUDA GPU (envs/gpu.yaml)")


def _prompt(text: str, images=(), prefix: str = "") -> Prompt:
    content = [{"type": "text", "text": text}] + [{"type": "image"} for _ in images]
    return Prompt([{"role": "user", "content": content}], list(images), assistant_prefix=prefix)


@dataclass
class _Sample:  # stands in for vllm.CompletionOutput
    index: int
    token_ids: list
    finish_reason: str
    stop_reason: object = None
    text: str = "(vLLM's own detokenisation: not used)"


@dataclass
class _Out:  # stands in for vllm.RequestOutput
    outputs: list
    prompt_token_ids: list = field(default_factory=list)


@pytest.fixture
def no_vllm(monkeypatch):
    """Make ``import vllm`` fail, whether or not vLLM is installed."""
    monkeypatch.setitem(sys.modules, "vllm", None)


# ------------------------------------------------------------------ import and dispatch


def test_module_imports_without_vllm(no_vllm):
    mod = importlib.reload(vb)  # `import vllm` would raise here (sys.modules["vllm"] is None): nothing imports it
    assert callable(mod.generate) and callable(mod.load) and mod.RolloutEngine


def test_hf_backend_is_the_hf_generate():
    b = get_backend("hf")
    assert b.name == "hf" and b.generate is hf.generate


def test_vllm_backend_without_vllm_names_the_install(no_vllm):
    with pytest.raises(vb.VLLMUnavailable) as err:
        get_backend("vllm")
    msg = str(err.value)
    assert isinstance(err.value, ImportError)
    assert "envs/gpu.yaml" in msg and "pip install -e '.[gpu]'" in msg and "--no-deps" in msg and "0.33.0" in msg


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown generation backend 'tgi'"):
        get_backend("tgi")


def test_sample_file_with_vllm_fails_before_loading_anything(no_vllm, tmp_path):
    from synergy.sampling import sample_file

    with pytest.raises(vb.VLLMUnavailable):  # not a missing-file error: the backend is checked first
        sample_file(str(tmp_path / "no-model"), str(tmp_path / "no-bench.parquet"), SamplingConfig(), reasoning=False,
                    image_position="after_text", timeout_s=1.0, backend="vllm")


def test_rollout_engine_without_vllm(no_vllm, tiny_loaded):
    _, processor = tiny_loaded
    with pytest.raises(vb.VLLMUnavailable):
        vb.RolloutEngine("unused", VLLMConfig(), processor, stop_ids=[1])


# ------------------------------------------------------------------ sampling parameters


def test_sampling_params_translation():
    cfg = SamplingConfig(n=16, temperature=0.6, top_p=0.95, top_k=0, max_new_tokens=24576, seed=3, min_new_tokens=2)
    kw = vb.sampling_params_kwargs(cfg, [5, 7])
    assert kw == {"n": 16, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_tokens": 24576, "min_tokens": 2,
                  "repetition_penalty": 1.0, "seed": 3, "stop_token_ids": [5, 7]}
    assert vb.sampling_params_kwargs(SamplingConfig(top_k=20), [5])["top_k"] == 20
    assert vb.sampling_params_kwargs(cfg, [5], seed=99)["seed"] == 99
    bias = vb.sampling_params_kwargs(cfg, [5], suppress_ids=[3, 4])["logit_bias"]
    assert bias == {3: vb.SUPPRESS_BIAS, 4: vb.SUPPRESS_BIAS} and vb.SUPPRESS_BIAS <= -1e9


def test_greedy_asks_one_sample():
    kw = vb.sampling_params_kwargs(SamplingConfig(n=4, temperature=0, top_k=20, top_p=0.5), [5])
    assert (kw["n"], kw["temperature"], kw["top_k"], kw["top_p"]) == (1, 0.0, 0, 1.0)


def test_request_seeds_are_distinct_deterministic_and_small():
    seeds = [vb.request_seed(7, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [vb.request_seed(7, i) for i in range(1000)] and seeds[0] != vb.request_seed(8, 0)


# ------------------------------------------------------------------ requests and engine arguments


def test_requests_use_the_hf_prompt_text_and_pil_images(tiny_loaded, test_images):
    _, processor = tiny_loaded
    prompts = [_prompt("How many red squares?", test_images[:1]), _prompt("What is 3 + 4?"),
               _prompt("Two images: how many?", test_images),
               _prompt("Continue.", test_images[:1], prefix="<think> I count")]
    reqs = vb.build_requests(processor, prompts)
    assert [r["prompt"] for r in reqs] == hf.prompt_texts(processor, prompts)
    assert reqs[0]["multi_modal_data"] == {"image": [test_images[0]]} and "multi_modal_data" not in reqs[1]
    assert reqs[2]["multi_modal_data"]["image"] == test_images
    # one <|image_pad|> placeholder per image, expanded by vLLM's processor as the hf processor does
    assert [r["prompt"].count("<|image_pad|>") for r in reqs] == [1, 0, 2, 1]
    # progressive's trace prefix is part of the prompt vLLM continues, after the generation prompt
    assert reqs[3]["prompt"].endswith("<|im_start|>assistant\n<think> I count")


def test_engine_kwargs_carry_config_and_pixel_cap():
    vcfg = VLLMConfig(tensor_parallel_size=2, gpu_memory_utilization=0.85, max_model_len=32768, limit_mm_per_prompt=7)
    kw = vb.engine_kwargs("/models/base", vcfg, max_pixels=1003520, seed=4)
    assert kw["model"] == "/models/base" and kw["tensor_parallel_size"] == 2 and kw["gpu_memory_utilization"] == 0.85
    assert kw["max_model_len"] == 32768 and kw["limit_mm_per_prompt"] == {"image": 7} and kw["seed"] == 4
    assert kw["mm_processor_kwargs"] == {"max_pixels": 1003520}
    assert "mm_processor_kwargs" not in vb.engine_kwargs("/m", VLLMConfig())  # prompt.max_pixels: null
    assert vb.engine_kwargs("/m", VLLMConfig(), min_pixels=3136, max_pixels=3136)["mm_processor_kwargs"] == \
        {"min_pixels": 3136, "max_pixels": 3136}


def test_rollout_engine_kwargs_name_the_worker_extension_and_bound_batched_tokens(tiny_loaded):
    """GRPO's colocated engine: weight sync by a named worker method, a token budget per step, trainer's pixel bounds."""
    from synergy.generate.vllm_worker import LOAD_METHOD, WORKER_EXTENSION, WeightSync

    _, processor = tiny_loaded
    vcfg = VLLMConfig(tensor_parallel_size=2, rollout_gpu_memory_utilization=0.4, rollout_max_num_batched_tokens=8192)
    kw = vb.rollout_engine_kwargs("/m", vcfg, processor, process_index=3)
    assert kw["worker_extension_cls"] == WORKER_EXTENSION and kw["max_num_batched_tokens"] == 8192
    assert kw["gpu_memory_utilization"] == 0.4 and kw["seed"] == 1 and kw["distributed_executor_backend"] == "external_launcher"
    assert kw["mm_processor_kwargs"] == dict(zip(("min_pixels", "max_pixels"), vb.pixel_bounds(processor)))
    assert "max_num_batched_tokens" not in vb.rollout_engine_kwargs("/m", VLLMConfig(rollout_max_num_batched_tokens=None),
                                                                     processor)
    module, name = WORKER_EXTENSION.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is WeightSync and callable(getattr(WeightSync, LOAD_METHOD))

    class _Model:  # the worker's model: records what it was asked to load
        def load_weights(self, weights):
            self.got = list(weights)
            return {n for n, _ in self.got}

    class _Worker(WeightSync):  # vLLM mixes the extension into its worker class the same way
        def __init__(self):
            self.model = _Model()

        def get_model(self):
            return self.model

    w = _Worker()
    assert getattr(w, LOAD_METHOD)([("lm_head.weight", torch.zeros(2))]) == 1 and w.model.got[0][0] == "lm_head.weight"
    with pytest.raises(ConfigError, match="rollout_max_num_batched_tokens"):
        VLLMConfig(rollout_max_num_batched_tokens=0)


def test_vllm_config_from_the_study_section():
    assert vb.as_vllm_config(None) == VLLMConfig()
    assert vb.as_vllm_config({"tensor_parallel_size": 2}).tensor_parallel_size == 2  # rules pass the raw section
    with pytest.raises(ConfigError, match="vllm.tensor_paralel_size"):
        vb.as_vllm_config({"tensor_paralel_size": 2})


def test_pixel_bounds_of_the_tiny_processor(tiny_loaded):
    _, processor = tiny_loaded
    lo, hi = vb.pixel_bounds(processor)
    assert lo == hi == 56 * 56  # build_processor: min_pixels = max_pixels = image_size**2


def test_stop_tokens_from_generation_config(tiny_model_dir, tiny_loaded, tmp_path):
    model, processor = tiny_loaded
    eos = model.generation_config.eos_token_id
    assert vb.stop_token_ids(tiny_model_dir, processor.tokenizer) == ([eos] if isinstance(eos, int) else list(eos))
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": [11, 12]}')
    assert vb.stop_token_ids(tmp_path, processor.tokenizer) == [11, 12]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert vb.stop_token_ids(empty, processor.tokenizer) == [processor.tokenizer.eos_token_id]


# ------------------------------------------------------------------ output conversion


def test_outputs_become_hf_style_completions(tiny_loaded):
    _, processor = tiny_loaded
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    body = tok("<think> I count </think> \\boxed{7}", add_special_tokens=False)["input_ids"]
    outs = [
        _Out([_Sample(1, body[:3], "length"), _Sample(0, body + [eos], "stop")]),  # out of index order
        _Out([_Sample(0, body + [eos, 42], "stop"), _Sample(1, body[:2], "stop", stop_reason=eos)]),
    ]
    comps, ids = vb.completions_from_outputs(outs, 2, tok, [eos])
    text = tok.decode(body, skip_special_tokens=True)
    assert comps[0] == [Completion(text=text, num_tokens=len(body) + 1, truncated=False),
                        Completion(text=tok.decode(body[:3], skip_special_tokens=True), num_tokens=3, truncated=True)]
    assert ids[0][0] == body + [eos] and ids[1][0] == body + [eos]  # cut after the first stop token
    assert ids[1][1] == body[:2] + [eos] and comps[1][1].num_tokens == 3  # stop token not echoed: kept, as hf keeps it
    assert "<|im_end|>" not in comps[0][0].text
    # the same ids give the same text as the hf backend's decoding
    assert comps[0][0].text == tok.batch_decode([body + [eos]], skip_special_tokens=True)[0]


def test_greedy_output_is_repeated(tiny_loaded):
    tok = tiny_loaded[1].tokenizer
    comps, ids = vb.completions_from_outputs([_Out([_Sample(0, [5, 6], "length")])], 3, tok, [1], greedy=True)
    assert len(comps[0]) == 3 and len(set(comps[0])) == 1 and ids[0] == [[5, 6]] * 3


def test_bad_outputs_raise(tiny_loaded):
    tok = tiny_loaded[1].tokenizer
    with pytest.raises(RuntimeError, match="2 samples .* expected 3"):
        vb.completions_from_outputs([_Out([_Sample(0, [5], "length"), _Sample(1, [5], "length")])], 3, tok, [1])
    with pytest.raises(RuntimeError, match="reason 'abort'"):
        vb.completions_from_outputs([_Out([_Sample(0, [5], "abort")])], 1, tok, [1])
    with pytest.raises(RuntimeError, match="without one of the stop tokens"):
        vb.completions_from_outputs([_Out([_Sample(0, [5], "stop", stop_reason="</s>")])], 1, tok, [1])


def test_rollout_batch_checks_prompt_ids_and_vision_tokens(tiny_loaded, test_images):
    _, processor = tiny_loaded
    prompts = [_prompt("How many?", test_images[:1]), _prompt("Continue.", prefix="<think> I")]
    enc = hf.encode_prompts(processor, prompts)
    mask = enc["attention_mask"].bool()
    ids = [enc["input_ids"][i][mask[i]].tolist() for i in range(2)]
    comp = [[[5, 6, 1], [7]], [[8, 1], [9, 9]]]
    outs = [_Out([], prompt_token_ids=ids[0]), _Out([], prompt_token_ids=ids[1])]
    s = vb.rollout_batch(processor, prompts, outs, comp, [[True, False], [True, False]], [1], [], enc)
    assert s["prompt_ids"] == ids and s["comp_ids"] == [[5, 6, 1], [7], [8, 1], [9, 9]]
    assert s["ended"] == [True, False, True, False] and s["stop"].tolist() == [1]
    assert s["texts"] == processor.tokenizer.batch_decode(s["comp_ids"], skip_special_tokens=True)
    # the image prompt's ids hold the expanded image tokens: fewer (another pixel cap) must fail loudly
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ids[0].count(pad) == 4
    short = [t for k, t in enumerate(ids[0]) if not (t == pad and k == ids[0].index(pad))]
    with pytest.raises(RuntimeError, match=r"prompt 0: vLLM.s prompt token ids \(42\) differ .*max_pixels"):
        vb.rollout_batch(processor, prompts, [_Out([], short), outs[1]], comp, [[True] * 2] * 2, [1], [], enc)
    with pytest.raises(RuntimeError, match=r"vision placeholder tokens \[7\]"):
        vb.rollout_batch(processor, prompts, outs, comp, [[True] * 2] * 2, [1], [7], enc)


# ------------------------------------------------------------------ GRPO hook


def test_collect_rollouts_uses_the_given_sampler(tiny_loaded):
    """The grpo.rollout_backend hook: a sampler with _sample's contract replaces the hf sampler, call for call."""
    from synergy.data.suite import build_train_set
    from synergy.grading import Grader
    from synergy.train import grpo

    model, processor = tiny_loaded
    rows = build_train_set("rl", 2, {"exists": 1.0}, style="reflective_short", modality="image", seed=0, image_size=56,
                           max_objects=3, exclude=set())
    cfg = GRPOSettings(learning_rate=1e-3, steps=1, prompts_per_step=2, mini_batch_size=1, num_generations=2,
                       max_new_tokens=6, kl_coef=0.0, reasoning_instruction=True)
    calls = []

    def sampler(proc, prompts, c, seed):  # the hf sampler, called through the hook
        calls.append(([p.assistant_prefix for p in prompts], seed))
        return grpo._sample(model, proc, prompts, c, seed)

    plan = grpo.HybridPlan(mode="progressive", sft_weight=0.2, prefix_fraction=0.5, online=False,
                           offline_zero=frozenset({0}))
    with Grader(timeout_s=5) as grader:
        kw = dict(step_seed=5, grader=grader, image_position="after_text", hybrid=plan)
        a = grpo.collect_rollouts(model, processor, rows, cfg, **kw)
        b = grpo.collect_rollouts(model, processor, rows, cfg, sampler=sampler, **kw)
    # plain prompts first (seed 5), then the prefix-guided one (seed 6) whose prompt carries the trace prefix
    assert [c[1] for c in calls] == [5, 6] and calls[0][0] == [""] and calls[1][0][0]
    assert rows[0]["response"].lstrip("\n").startswith(calls[1][0][0])
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.completion_mask, b.completion_mask)
    assert torch.equal(a.sft_weight, b.sft_weight) and a.texts == b.texts and a.routes == b.routes == ["prefix", "rl"]


def test_train_grpo_with_vllm_rollouts_fails_early_without_vllm(no_vllm, tmp_path):
    from synergy.data.suite import build_train_set
    from synergy.train.grpo import train_grpo

    rows = build_train_set("rl", 2, {"exists": 1.0}, style="none", modality="image", seed=0, image_size=56,
                           max_objects=3, exclude=set())
    cfg = GRPOSettings(learning_rate=1e-3, steps=1, prompts_per_step=2, mini_batch_size=1, num_generations=2,
                       rollout_backend="vllm")
    with pytest.raises(vb.VLLMUnavailable, match="envs/gpu.yaml"):  # before the (missing) model is loaded
        train_grpo(tmp_path / "no-model", rows, tmp_path / "out", log_path=tmp_path / "log.parquet",
                   state_dir=tmp_path / "state", cfg=cfg)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ config


def test_config_defaults_and_paper():
    base = load_config_file(ROOT / "config" / "config.yaml")
    paper = load_config_file(ROOT / "config" / "paper.yaml")
    assert base.raw["grpo"]["rollout_backend"] == "hf" and base.difficulty.backend == "hf"
    assert paper.raw["grpo"]["rollout_backend"] == "vllm" and paper.difficulty.backend == "vllm"
    assert paper.evaluation.backend == "vllm" and paper.vllm.rollout_gpu_memory_utilization == 0.4
    assert paper.arm_settings("rl").rollout_backend == "vllm"
    assert GRPOSettings(learning_rate=1, steps=1, prompts_per_step=1, mini_batch_size=1,
                        num_generations=2).rollout_backend == "hf"


def test_config_rejects_bad_backend_keys(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    data["grpo"]["rollout_backend"] = "tgi"
    data["vllm"]["rollout_gpu_memory_utilization"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config_file(bad)
    assert "grpo.rollout_backend" in str(err.value) and "vllm.rollout_gpu_memory_utilization" in str(err.value)
    with pytest.raises(ConfigError, match="grpo.rollout_backend"):
        GRPOSettings.from_dict({"learning_rate": 1, "steps": 1, "prompts_per_step": 1, "mini_batch_size": 1,
                                "num_generations": 2, "rollout_backend": "VLLM"})
    with pytest.raises(ConfigError, match="evaluation.backend"):
        EvalConfig.from_dict({"num_samples": 1, "backend": "sglang",
                              "sampling": {"temperature": 1, "top_p": 1, "top_k": 0, "max_new_tokens": 4}})
    with pytest.raises(ConfigError, match="difficulty.backend"):
        DifficultyConfig.from_dict({"num_samples": 16, "thresholds": [12, 8, 5, 2], "reasoning_instruction": False,
                                    "backend": "gpu", "sampling": {"temperature": 1, "top_p": 1, "top_k": 0,
                                                                   "max_new_tokens": 4}})
    with pytest.raises(ConfigError, match="vllm.rollout_gpu_memory_utilization"):
        VLLMConfig(rollout_gpu_memory_utilization=0)


# ------------------------------------------------------------------ the GPU environment


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", line.split("#")[0].strip())
        out[m.group(1).lower().replace("_", "-")] = m.group(3).replace(" ", "")
    return out


def test_gpu_env_pins_vllms_torch_and_repeats_the_other_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "envs" / "gpu.yaml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace(" ", "") in ("python=3.11", "python=3.12")
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not any(str(p).startswith("-e") for p in pip)  # the package goes in with --no-deps (post-deploy)
    gpu, core, extra = _pins(pip), _pins(project["dependencies"]), _pins(project["optional-dependencies"]["gpu"])
    # vLLM 0.33.0's own pins (its wheel metadata), which replace the CPU ones
    assert (gpu["vllm"], gpu["torch"], gpu["torchvision"], gpu["torchaudio"]) == \
        ("==0.33.0", "==2.14.0", "==0.29.0", "==2.11.0")
    assert gpu["transformers"] == "==5.20.2"  # vllm 0.33.0: transformers>=5.16.1,<5.21.0
    replaced = {"torch", "torchvision", "transformers"}
    assert all(core[k] != gpu[k] for k in replaced)
    for name, spec in core.items():  # every other runtime dependency, same pin (jsonschema: vLLM's floor)
        if name not in replaced:
            assert name in gpu, f"envs/gpu.yaml lacks {name} (pyproject: {spec})"
            assert gpu[name] == spec or name == "jsonschema", (name, spec, gpu[name])
    post = (ROOT / "envs" / "gpu.post-deploy.sh").read_text()
    for name, spec in extra.items():  # the gpu extra names exactly what the env installs
        assert gpu.get(name) == spec or f"{name}{spec}" in post, (name, spec)
    assert "pip install --no-deps -e" in post and "--no-build-isolation" in post


def test_gpu_docs_say_what_ran():
    doc = (ROOT / "docs" / "gpu.md").read_text()
    assert "envs/gpu.yaml" in doc and "rollout_backend" in doc and "not run" in doc.lower()


# ------------------------------------------------------------------ GPU (vLLM + CUDA)


@pytest.fixture(scope="module")
def gpu_model_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL with 64-wide attention heads (vLLM's kernels' sizes), saved for vLLM to load."""
    from conftest import synthetic_corpus

    from synergy.models import save_model
    from synergy.tiny_model import TinyModelConfig, build_processor, build_tiny_model, train_tokenizer

    cfg = TinyModelConfig(hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512,
                          vision_depth=2, vision_hidden_size=128, vision_heads=2, vision_intermediate_size=256,
                          image_size=56, seed=0)
    tok = train_tokenizer(synthetic_corpus(), vocab_size=512)
    processor = build_processor(tok, cfg.image_size)
    path = tmp_path_factory.mktemp("vllm-tiny") / "model"
    save_model(build_tiny_model(cfg, tok), processor, path)
    return path


@pytest.mark.gpu
@gpu_only
def test_gpu_generate_on_the_tiny_model(gpu_model_dir, test_images):
    model, processor = get_backend("vllm").load(gpu_model_dir, vllm=VLLMConfig(gpu_memory_utilization=0.3,
                                                                               limit_mm_per_prompt=2),
                                                max_pixels=56 * 56)
    prompts = [_prompt("How many red squares?", test_images[:1]), _prompt("What is 3 + 4?"),
               _prompt("Two images: how many?", test_images)]
    cfg = SamplingConfig(n=3, temperature=1.0, max_new_tokens=8, seed=1)
    calls = []
    out = get_backend("vllm").generate(model, processor, prompts, cfg, progress=lambda d, t: calls.append((d, t)))
    assert len(out) == 3 and all(len(o) == 3 for o in out) and calls == [(3, 3)]
    for c in (c for o in out for c in o):
        assert isinstance(c, Completion) and 1 <= c.num_tokens <= 8
        assert c.num_tokens == 8 if c.truncated else True
    assert out == get_backend("vllm").generate(model, processor, prompts, cfg)  # same seed, same samples
    greedy = get_backend("vllm").generate(model, processor, prompts, SamplingConfig(n=2, temperature=0, max_new_tokens=8))
    assert all(o[0] == o[1] for o in greedy)


@pytest.mark.gpu
@gpu_only
def test_gpu_rollout_engine_weight_refresh_changes_outputs(gpu_model_dir, test_images):
    from synergy.models import load_model
    from synergy.train import grpo

    model, processor = load_model(gpu_model_dir, device="cuda", dtype=torch.float32)
    engine = vb.RolloutEngine(gpu_model_dir, VLLMConfig(rollout_gpu_memory_utilization=0.3, limit_mm_per_prompt=1),
                              processor, stop_ids=grpo._stop_ids(model, processor),
                              suppress_ids=grpo._vision_token_ids(model))
    cfg = GRPOSettings(learning_rate=1e-3, steps=1, prompts_per_step=2, mini_batch_size=1, num_generations=4,
                       max_new_tokens=8)
    prompts = [_prompt("How many red squares?", test_images[:1]), _prompt("Go on.", prefix="<think> I count")]
    before = engine.sample(processor, prompts, cfg, 3)
    assert len(before["comp_ids"]) == 8 and before["prompt_ids"][0].count(
        processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 4  # vLLM's ids == the processor's encoding
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.lm_head.weight.mul_(-3.0)  # a policy that samples other tokens
    assert engine.load_weights(model) > 0
    after = engine.sample(processor, prompts, cfg, 3)
    assert after["comp_ids"] != before["comp_ids"]
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(original[n])
    engine.load_weights(model)
    restored = engine.sample(processor, prompts, cfg, 3)
    assert restored["comp_ids"] == before["comp_ids"]
