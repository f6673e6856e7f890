"""Pre-run checks of an external checkpoint (docs/scorecard.md §2): each bad input has its message."""
from __future__ import annotations

import json
import shutil

import pytest

from synergy.scorecard.checks import ExternalError, check_external


@pytest.fixture
def model(tiny_model_dir, tmp_path):
    """A copy of the saved tiny Qwen2.5-VL (a real model folder) that a test may break."""
    dest = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dest)
    return dest


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_a_saved_model_folder_passes(model):
    assert check_external({"name": "mine", "path": str(model)}) == model


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ExternalError, match=r"external arm 'mine': folder .*nowhere does not exist"):
        check_external({"name": "mine", "path": str(tmp_path / "nowhere")})


def test_a_text_only_model_is_not_a_vlm(model):
    cfg = json.loads((model / "config.json").read_text())
    cfg.pop("vision_config")
    cfg.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExternalError, match=r"is not a vision-language model \(model_type 'qwen2', architectures "
                                            r"\['Qwen2ForCausalLM'\]"):
        check_external({"name": "llm", "path": str(model)})


def test_a_folder_without_config_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExternalError, match="not a Hugging Face model folder"):
        check_external({"name": "x", "path": str(tmp_path / "empty")})


def test_a_processor_that_does_not_match_is_named(model):
    proc = next(p for p in (model / "processor_config.json", model / "preprocessor_config.json") if p.is_file())
    data = json.loads(proc.read_text())
    image = data.get("image_processor", data)
    image["patch_size"] = image["patch_size"] + 2
    proc.write_text(json.dumps(data))
    with pytest.raises(ExternalError, match=r"processor does not match the model: the processor cuts \d+ px patches"):
        check_external({"name": "m", "path": str(model)})
    proc.unlink()
    with pytest.raises(ExternalError, match="has no processor"):
        check_external({"name": "m", "path": str(model)})


def test_an_image_token_the_tokenizer_lacks_is_named(model):
    _edit(model / "config.json", image_token_id=10**6)
    with pytest.raises(ExternalError, match="image_token_id 1000000 is not a token of its tokenizer"):
        check_external({"name": "m", "path": str(model)})


def test_own_code_needs_trust_remote_code(model):
    _edit(model / "config.json", auto_map={"AutoModelForImageTextToText": "modeling_x.XForConditionalGeneration"})
    with pytest.raises(ExternalError, match="needs trust_remote_code: true on this external arm"):
        check_external({"name": "custom", "path": str(model)})
    assert check_external({"name": "custom", "path": str(model), "trust_remote_code": True}) == model


def test_a_hub_id_offline_and_not_cached_is_refused_with_the_way_out():
    entry = {"name": "hub", "hub": "synergy-tests/no-such-vlm", "revision": "abc123"}  # in no hub cache
    with pytest.raises(ExternalError, match=r"HF_HUB_OFFLINE=1 .*`hf download synergy-tests/no-such-vlm --revision abc123`"):
        check_external(entry, env={"HF_HUB_OFFLINE": "1"})
    assert check_external(entry, env={}) is None  # online: the download job fetches it, then its folder is checked


def test_a_cached_hub_id_is_checked_like_a_folder(model):
    assert check_external({"name": "hub", "hub": "org/m"}, env={"HF_HUB_OFFLINE": "1"},
                          cache=lambda repo, rev: model) == model


def test_bad_entries_are_named():
    with pytest.raises(ExternalError, match="exactly one of 'path'"):
        check_external({"name": "x", "path": "/a", "hub": "o/m"})
    with pytest.raises(ExternalError, match=r"unknown keys \['pth'\]"):
        check_external({"name": "x", "pth": "/a"})


def test_snakemake_stops_before_any_job_on_a_bad_external_and_on_a_taken_name(tmp_path):
    """The checks run when the DAG is built: a dry run of a study with a bad entry fails with the message."""
    import subprocess

    import yaml
    from tiny_study import snakemake_cmd, tiny_study

    study = tiny_study("ext", external=[{"name": "mine", "path": str(tmp_path / "nowhere")}])
    (tmp_path / "ext.yaml").write_text(yaml.safe_dump(study))
    out = subprocess.run(snakemake_cmd(tmp_path, "-n", configs=[tmp_path / "ext.yaml"]), capture_output=True, text=True)
    assert out.returncode != 0 and "external arm 'mine': folder" in out.stdout + out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.parquet"))
    with pytest.raises(ExternalError, match="the name is taken by a study arm"):
        from synergy.scorecard.checks import check_externals

        check_externals({"arms": [{"name": "base", "kind": "base"}], "external": [{"name": "base", "path": "/x"}]})


def test_seeds_of_must_name_an_evaluated_study_arm():
    from synergy.scorecard.checks import check_externals

    cfg = {"arms": [{"name": "base", "kind": "base"}], "external": [{"name": "mine", "path": "/x", "seeds_of": "rl"}]}
    with pytest.raises(ExternalError, match=r"seeds_of 'rl' is not an evaluated arm of this study \(have \['base'\]\)"):
        check_externals(cfg)


def test_the_workflow_reads_an_external_arm_from_its_folder_or_its_download_with_its_seeds(tmp_path):
    from types import SimpleNamespace

    import yaml
    from tiny_study import ROOT, tiny_study

    from synergy.config import deep_update, load_config
    from synergy.workflow import eval_reasoning, eval_seeds, evaluated_arms, external_downloads, model_dir

    raw = deep_update(yaml.safe_load((ROOT / "config/config.yaml").read_text()), tiny_study("ext", external=[
        {"name": "copy", "path": "elsewhere/base", "seeds_of": "base"},
        {"name": "hubbed", "hub": "org/vlm", "revision": "abc", "reasoning_instruction": False}]))
    study = load_config(raw)
    assert evaluated_arms(study) == ["base", "copy", "hubbed"]
    assert model_dir(study, "copy") == "elsewhere/base" and model_dir(study, "hubbed") == "resources/models/org--vlm@abc"
    assert external_downloads(study) == [{"path": "org/vlm", "revision": "abc"}]
    wc = lambda arm: SimpleNamespace(arm=arm, bench="synth-mixed", get=lambda k: None)  # noqa: E731
    assert eval_seeds(study, wc("copy")) == eval_seeds(study, wc("base")) != eval_seeds(study, wc("hubbed"))
    assert eval_reasoning(study, "copy") is True and eval_reasoning(study, "hubbed") is False
