"""Security of the pipeline (docs/reliability.md, "Security"): no remote code unless the config
turns it on, weights only from safetensors and nothing unpickled, wildcards that match no path or shell
text, and no hub token in a log."""
from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from synergy.config import load_config_file
from synergy.models import TRUST_REMOTE_CODE_ENV, load_model, trust_remote_code_default
from synergy.workflow import job_environment

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("synergy", "scripts", "benchmarks")


def _calls(name: str):
    """(file, ast.Call) for every call of an attribute or function called ``name`` in the pipeline's code."""
    for d in CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    f = node.func
                    called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                    if called == name:
                        yield path.relative_to(ROOT), node


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


# ------------------------------------------------------------------------------- remote code


def test_every_from_pretrained_passes_trust_remote_code_from_the_config_and_safetensors_for_weights():
    calls = list(_calls("from_pretrained"))
    assert calls  # synergy/models.py loads every model
    for path, call in calls:
        trust = _kw(call, "trust_remote_code")
        assert trust is not None, f"{path}:{call.lineno}: from_pretrained without an explicit trust_remote_code"
        assert not (isinstance(trust, ast.Constant) and trust.value is True), f"{path}:{call.lineno}: trusts always"
        owner = ast.unparse(call.func.value) if isinstance(call.func, ast.Attribute) else ""
        if not any(k in owner for k in ("Processor", "Tokenizer", "Config")):  # a model: weights
            st = _kw(call, "use_safetensors")
            assert isinstance(st, ast.Constant) and st.value is True, f"{path}:{call.lineno}: use_safetensors=True"


def test_trust_remote_code_comes_from_base_model_config_and_is_off_by_default(monkeypatch):
    study = load_config_file(ROOT / "config/config.yaml")
    assert study.base_model.trust_remote_code is False
    assert job_environment(study)[TRUST_REMOTE_CODE_ENV] == "0"
    on = load_config_file(ROOT / "config/config.yaml", _write_yaml({"base_model": {"trust_remote_code": True}}))
    assert job_environment(on)[TRUST_REMOTE_CODE_ENV] == "1"
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    assert trust_remote_code_default() is False
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "1")
    assert trust_remote_code_default() is True


def _write_yaml(data) -> Path:
    import tempfile

    import yaml

    fd, name = tempfile.mkstemp(suffix=".yaml")
    os.close(fd)
    Path(name).write_text(yaml.safe_dump(data))
    return Path(name)


def _remote_code_model(folder: Path, marker: Path) -> Path:
    """A checkpoint whose config asks for its own Python code; importing that code creates ``marker``."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil_vlm", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel",
                     "AutoProcessor": "evil.EvilProcessor"},
    }))
    (folder / "evil.py").write_text(textwrap.dedent(f'''
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("remote code ran")
        from transformers import PretrainedConfig
        class EvilConfig(PretrainedConfig):
            model_type = "evil_vlm"
    '''))
    return folder


def test_remote_code_never_runs_unless_turned_on(tmp_path, monkeypatch):
    marker = tmp_path / "ran.txt"
    folder = _remote_code_model(tmp_path / "evil", marker)
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    with pytest.raises((ValueError, OSError), match="trust_remote_code|custom code"):
        load_model(folder)
    monkeypatch.setenv(TRUST_REMOTE_CODE_ENV, "0")
    with pytest.raises((ValueError, OSError)):
        load_model(folder)
    assert not marker.exists()
    # the switch is real: with the config's flag on (a fresh process, modules cached under tmp_path) it runs
    env = {**os.environ, TRUST_REMOTE_CODE_ENV: "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", "import sys; from synergy.models import load_model; load_model(sys.argv[1])",
                    str(folder)], env=env, capture_output=True, timeout=300)
    assert marker.read_text() == "remote code ran"


# --------------------------------------------------------------------------------- no pickle


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):  # what a malicious pickle does: run code on load
        return (Path.write_text, (Path(self.marker), "unpickled"))


def test_weights_load_only_from_safetensors_never_from_a_pickle(tiny_model_dir, tmp_path):
    marker = tmp_path / "unpickled.txt"
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(OSError, match="safetensors|model.safetensors"):
        load_model(folder)
    assert not marker.exists()
    pickle.loads((folder / "pytorch_model.bin").read_bytes())  # the payload is real
    assert marker.read_text() == "unpickled"


def test_no_pickle_loading_in_the_pipeline_code():
    for d in CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                    assert not {"pickle", "dill", "cloudpickle", "joblib"} & {str(n).split(".")[0] for n in names}, path
    for path, call in _calls("load"):
        if isinstance(call.func, ast.Attribute) and ast.unparse(call.func.value) == "torch":
            wo = _kw(call, "weights_only")
            assert isinstance(wo, ast.Constant) and wo.value is True, f"{path}:{call.lineno}: torch.load needs weights_only=True"
    # accelerate reloads objects registered for checkpointing with weights_only=False: the schedule goes to JSON
    assert not list(_calls("register_for_checkpointing"))


def test_training_states_hold_no_pickled_object_and_load_with_weights_only(tiny_model_dir, tmp_path):
    from accelerate.utils.other import load as accelerate_load

    from synergy.config import SFTSettings
    from synergy.data.suite import build_train_set
    from synergy.train.sft_trainer import train_sft

    rows = build_train_set("s", 4, {"count_all": 1.0}, style="short", modality="image", seed=0, image_size=56,
                           max_objects=3, exclude=set(), reasoning_share=1.0)
    cfg = SFTSettings(learning_rate=1e-3, batch_size=2, micro_batch_size=2, epochs=1, val_fraction=0.0,
                      select="last", save_every_steps=1, max_length=512)
    train_sft(tiny_model_dir, rows, tmp_path / "m", log_path=tmp_path / "l.parquet", state_dir=tmp_path / "s", cfg=cfg,
              stop_after_steps=1)
    state = tmp_path / "s" / "step-000001"
    names = sorted(p.name for p in state.iterdir())
    assert "scheduler.json" in names and not [n for n in names if n.startswith("custom_checkpoint")]
    assert json.loads((state / "scheduler.json").read_text())["last_epoch"] == 1
    serialized = [p for p in state.iterdir() if p.suffix in (".bin", ".pkl", ".pt")]
    assert {p.name for p in serialized} == {"optimizer.bin", "random_states_0.pkl"}
    for p in serialized:  # what the resume does: torch.load(weights_only=True) with numpy arrays allowed
        accelerate_load(p, map_location="cpu", weights_only=True)
    with pytest.raises(pickle.UnpicklingError):  # and an object that is not plain data is refused
        bad = tmp_path / "bad.bin"
        torch.save({"x": _Payload(tmp_path / "never.txt")}, bad)
        accelerate_load(bad, weights_only=True)
    assert not (tmp_path / "never.txt").exists()


# --------------------------------------------------------------------------------- wildcards


@pytest.fixture(scope="module")
def workflow_rules():
    """The rules of the whole embedded study, as Snakemake parses them."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(),
                          config_settings=ConfigSettings(configfiles=[ROOT / "config/config.yaml"]),
                          snakefile=ROOT / "Snakefile", workdir=ROOT)
        yield list(wf._workflow.rules)


def test_every_output_wildcard_is_constrained_to_config_names(workflow_rules):
    checked = 0
    for rule in workflow_rules:
        for out in rule.output:
            pattern = out.regex().pattern
            for name in rule.wildcard_names:
                group = pattern.split(f"(?P<{name}>", 1)
                if len(group) == 2:
                    body = group[1]
                    assert not body.startswith((".+)", ".*)", "[^/]+)")), f"{rule.name}: {{{name}}} is unconstrained"
                    checked += 1
    assert checked >= 10


BAD_TARGETS = [
    "results/embedded/eval/../../../etc/synth-count.parquet",
    "results/embedded/eval/base/../../../tmp/synth-count.parquet",
    "results/embedded/eval/base/../rl/synth-count.parquet",
    "results/embedded/eval/base;rm -rf ~/synth-count.parquet",
    "results/embedded/eval/$(touch pwned)/synth-count.parquet",
    "results/embedded/eval/base/synth-count.parquet; echo pwned",
    "results/embedded/eval/`id`/synth-count.parquet",
    "results/embedded/models/rl/../../../home",
    "results/embedded/models/rl && curl x",
    "results/embedded/data/bench/../../../secret.parquet",
    "results/embedded/data/bench/synth count.parquet",
    "results/embedded/tables/level_accuracy|sh.csv",
    "results/embedded/difficulty/train/rl/../../x.samples.parquet",
    "results/smoke/tables/table2_kl.csv",  # another study's folder
    "results/embedded/../smoke/tables/table2_kl.csv",
    "results/tables/table2_kl.csv",  # no study folder
    "/etc/passwd",
]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_no_rule_matches_a_path_or_shell_text(workflow_rules, target):
    assert not [r.name for r in workflow_rules if r.is_producer(target)]


def test_good_targets_still_match(workflow_rules):
    for target in ("results/embedded/eval/rl/synth-count.parquet", "results/embedded/models/sft-s1.1-r1",
                   "results/embedded/data/train/s1.1-r1.parquet", "results/embedded/tables/table2_kl.csv"):
        assert [r.name for r in workflow_rules if r.is_producer(target)], target


def test_rules_never_build_shell_commands():
    for smk in sorted((ROOT / "rules").glob("*.smk")) + [ROOT / "Snakefile"]:
        text = smk.read_text()
        assert not [line for line in text.splitlines() if line.strip().startswith(("shell:", "run:"))], smk


# ------------------------------------------------------------------------------------ secrets

_LOGGING_JOB = textwrap.dedent('''
    import logging, os, sys, warnings
    from synergy.logs import setup_logging

    setup_logging(sys.argv[1])
    token = os.environ["HF_TOKEN"]
    logging.getLogger("synergy.test").info("downloading with token %s", token)
    logging.getLogger("huggingface_hub").warning("GET https://huggingface.co/api?token=" + token)
    warnings.warn("a library warns about " + os.environ["HUGGING_FACE_HUB_TOKEN"])
    logging.getLogger("synergy.test").info("short values stay: %s", os.environ["OTHER"])
    raise RuntimeError("request failed: Authorization: Bearer " + token)
''')


def test_no_hub_token_reaches_a_log(tmp_path):
    token = "hf_FAKEsecretTOKEN0123456789"
    log = tmp_path / "logs" / "job.log"
    env = {**os.environ, "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token + "x", "OTHER": "ok"}
    out = subprocess.run([sys.executable, "-c", _LOGGING_JOB, str(log)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1  # the job still fails
    text = log.read_text()
    for where in (text, out.stderr, out.stdout):
        assert token not in where
    assert text.count("***") >= 4 and "short values stay: ok" in text
    assert "RuntimeError: request failed: Authorization: Bearer ***" in text  # the traceback is in the job's log
    assert "Traceback" in text and "uncaught RuntimeError" in text
