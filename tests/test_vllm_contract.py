"""The vLLM interface ``synergy/generate/vllm.py`` relies on exists in the pinned vLLM: read from its wheel.

vLLM runs only on GPUs, and the CPU tiers never import it; so this test downloads the pinned wheel
(``pip download --no-deps vllm==<pin>``, nothing installed), reads its source with ``ast`` and fails
if any class, method, argument or ``SamplingParams`` field the backend uses is missing there:

- every keyword of ``vllm.LLM(...)`` the backend passes (``engine_kwargs``, ``rollout_engine_kwargs``
  with every option on) is a parameter of ``LLM.__init__`` or a field of ``EngineArgs`` (where
  ``LLM``'s ``**kwargs`` go), and ``external_launcher`` is a known executor backend;
- every ``SamplingParams`` keyword (``sampling_params_kwargs``, suppression bias included) is one
  of its fields, and its ``top_k`` default is 0 (= off, the value we pass);
- every method the backend calls on its ``LLM`` (found in the module's source: ``llm.<name>(``)
  exists, with the arguments we pass (``generate(..., use_tqdm=)``, ``collective_rpc(method, args=)``);
- the ``RequestOutput`` / ``CompletionOutput`` fields read, the worker's ``get_model``, the
  worker-extension mechanism (``worker_extension_cls``) with no name clash for our method, and
  Qwen2.5-VL's ``load_weights``.

Skipped, saying why, when the wheel cannot be downloaded (no network or no package index).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from synergy.config import VLLMConfig
from synergy.generate import vllm as vb
from synergy.generate.hf import SamplingConfig
from synergy.generate.vllm_worker import LOAD_METHOD, WORKER_EXTENSION, WeightSync

ROOT = Path(__file__).resolve().parent.parent


def _pin() -> str:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (spec,) = [d for d in extra if d.startswith("vllm==")]
    return spec.split("==", 1)[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    version = _pin()
    assert version == vb.VLLM_VERSION  # the module is written against the pinned version
    dest = tmp_path_factory.mktemp("vllm-wheel")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", f"vllm=={version}", "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip download of vllm=={version} took over 900 s (slow or no network); contract not checked")
    wheels = sorted(dest.glob("vllm-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        pytest.skip(f"cannot download vllm=={version} with pip (no network or package index here?): {reason}")
    return zipfile.ZipFile(wheels[0])


def _tree(whl: zipfile.ZipFile, path: str) -> ast.Module:
    return ast.parse(whl.read(path).decode())


def _classes(whl: zipfile.ZipFile, prefix: str) -> dict[str, ast.ClassDef]:
    """Every class defined in the wheel's files under ``prefix`` (by name; later files do not override)."""
    out: dict[str, ast.ClassDef] = {}
    for name in whl.namelist():
        if name.startswith(prefix) and name.endswith(".py"):
            for node in ast.walk(_tree(whl, name)):
                if isinstance(node, ast.ClassDef):
                    out.setdefault(node.name, node)
    return out


def _methods(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, ast.FunctionDef]:
    """Methods of ``cls`` and of its bases found in ``classes`` (own first)."""
    out = {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for base in cls.bases:
        name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
        if name in classes and classes[name] is not cls:
            for k, v in _methods(classes[name], classes).items():
                out.setdefault(k, v)
    return out


def _params(fn: ast.FunctionDef) -> set[str]:
    a = fn.args
    return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}


def _fields(cls: ast.ClassDef) -> dict[str, ast.AnnAssign]:
    """Annotated class-level fields (dataclass / msgspec struct fields)."""
    return {n.target.id: n for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _all_kwargs() -> tuple[dict, dict]:
    """The LLM(...) and SamplingParams(...) keywords the backend can pass, every option on."""
    vcfg = VLLMConfig(tensor_parallel_size=1, max_model_len=4096, limit_mm_per_prompt=2,
                      rollout_max_num_batched_tokens=8192)

    class _Proc:  # a processor with pixel bounds (only what rollout_engine_kwargs reads)
        image_processor = type("I", (), {"size": {"shortest_edge": 3136, "longest_edge": 1003520}})()

    llm = {**vb.engine_kwargs("/m", vcfg, max_pixels=1003520, min_pixels=3136, seed=1, trust_remote_code=True),
           **vb.rollout_engine_kwargs("/m", vcfg, _Proc(), process_index=0)}
    sp = vb.sampling_params_kwargs(SamplingConfig(n=2, temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=8,
                                                  min_new_tokens=1), [2], seed=3, suppress_ids=[5])
    return llm, sp


def test_pinned_vllm_has_everything_the_backend_uses(wheel):
    names = set(wheel.namelist())
    init = wheel.read("vllm/__init__.py").decode()
    assert re.search(r"\bLLM\b", init) and re.search(r"\bSamplingParams\b", init)  # `from vllm import ...`

    # LLM(...) keywords: LLM.__init__ parameters or EngineArgs fields (LLM passes **kwargs to EngineArgs)
    entry = _classes(wheel, "vllm/entrypoints/")
    llm_methods = _methods(entry["LLM"], entry)
    init_params = _params(llm_methods["__init__"])
    assert llm_methods["__init__"].args.kwarg is not None
    engine_args = _fields(_classes(wheel, "vllm/engine/")["EngineArgs"])
    llm_kw, sp_kw = _all_kwargs()
    missing = sorted(k for k in llm_kw if k not in init_params and k not in engine_args)
    assert not missing, f"vllm.LLM / EngineArgs of vLLM {_pin()} lack {missing}"
    assert "external_launcher" in wheel.read("vllm/config/parallel.py").decode()

    # SamplingParams fields, and top_k 0 = off (its default)
    sp_fields = _fields(_classes(wheel, "vllm/sampling_params.py")["SamplingParams"])
    missing = sorted(k for k in sp_kw if k not in sp_fields)
    assert not missing, f"SamplingParams of vLLM {_pin()} lacks {missing}"
    assert ast.literal_eval(sp_fields["top_k"].value) == 0 and sp_kw["top_k"] == 20
    assert vb.sampling_params_kwargs(SamplingConfig(top_k=0), [2])["top_k"] == 0

    # every LLM method the backend calls, with the keywords it passes
    source = (ROOT / "synergy/generate/vllm.py").read_text()
    called = set(re.findall(r"\bllm\.(\w+)\(", source))
    assert {"generate", "collective_rpc", "reset_prefix_cache"} <= called
    assert not called - set(llm_methods), f"LLM of vLLM {_pin()} lacks {sorted(called - set(llm_methods))}"
    assert "use_tqdm" in _params(llm_methods["generate"])
    assert {"method", "args"} <= _params(llm_methods["collective_rpc"])

    # outputs read by completions_from_outputs / rollout_batch
    outs = _classes(wheel, "vllm/outputs.py")
    assert {"index", "token_ids", "finish_reason", "stop_reason"} <= set(_fields(outs["CompletionOutput"]))
    req = set(_params(_methods(outs["RequestOutput"], outs)["__init__"])) | set(_fields(outs["RequestOutput"]))
    assert {"prompt_token_ids", "outputs"} <= req

    # the worker extension: vLLM mixes worker_extension_cls into its worker; our method must not clash
    workers = _classes(wheel, "vllm/v1/worker/")
    worker = _methods(workers["Worker"], workers)
    assert "get_model" in worker and LOAD_METHOD not in worker
    assert "worker_extension_cls" in wheel.read("vllm/v1/worker/worker_base.py").decode()
    assert not {a for a in dir(WeightSync) if not a.startswith("__")} & set(worker)
    assert llm_kw["worker_extension_cls"] == WORKER_EXTENSION

    # the model's load_weights (what get_model() returns for Qwen2.5-VL)
    qwen = "vllm/model_executor/models/qwen2_5_vl.py"
    assert qwen in names
    models = {n.name: n for n in ast.walk(_tree(wheel, qwen)) if isinstance(n, ast.ClassDef)}
    assert "load_weights" in {f.name for f in models["Qwen2_5_VLForConditionalGeneration"].body
                              if isinstance(f, ast.FunctionDef)}
