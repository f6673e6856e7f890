"""The bad-input table of docs/reliability.md: every bad config, data row and model output
gets a clear error naming the problem, or is counted and reported; nothing is silently dropped.

Cases already covered elsewhere are cited in docs/reliability.md, not repeated here (unknown keys,
wrong top-level types, missing parents, a two-arm cycle: tests/test_config.py; a row without an
answer, an unreadable image, an empty set, duplicate ids through ``validate_rows``: tests/test_suite.py;
an empty response and a sympy comparison that would take minutes: tests/test_grading.py). The cases
here add what those do not reach: arm overrides, names that would become paths, the training
stages, files on disk, and the outputs a model can produce.
"""
from __future__ import annotations

import copy
import io
import logging
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from synergy.config import ConfigError, GRPOSettings, SFTSettings, load_config, load_config_file
from synergy.data.schema import DataError, make_row, to_table, validate_rows
from synergy.data.suite import build_benchmark
from synergy.grading import STATUSES, Grader
from synergy.io import read_rows
from synergy.regrade import regrade_samples
from test_images import _animated_gif, _bomb

ROOT = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((ROOT / "config/config.yaml").read_text())

# ------------------------------------------------------------------------------------------ config


def _arm(raw, name):
    return next(a for a in raw["arms"] if a["name"] == name)


CONFIG_CASES = [
    # (case, mutation of config/config.yaml, the message the user sees)
    ("wrong type in an arm's settings override", lambda r: _arm(r, "sft-eureka").update(settings={"epochs": "two"}),
     r"config key 'arms\[3\]\.settings\.epochs': 'two' is not of type 'integer'"),
    ("unknown key in an arm's settings override", lambda r: _arm(r, "rl").update(settings={"kl_coeff": 0.1}),
     r"unknown config key 'grpo \(arm rl\)\.kl_coeff'"),
    ("inconsistent sizes in an arm's settings override",
     lambda r: _arm(r, "sft-eureka").update(settings={"batch_size": 10, "micro_batch_size": 4}),
     r"arms\[3\]' \(sft-eureka\).*batch_size 10 is not a multiple of micro_batch_size 4"),
    ("arm that is its own parent (cycle of one)", lambda r: _arm(r, "rl").update(init="rl"),
     r"the arms \['rl'\] form a cycle of parents"),
    ("cycle of three arms", lambda r: [_arm(r, a).update(init=b) for a, b in
                                      (("rl", "rl-nokl"), ("rl-nokl", "rl-noeasy"), ("rl-noeasy", "rl"))],
     r"form a cycle of parents"),
    ("arm trained on a train set that does not exist", lambda r: _arm(r, "rl").update(train_set="rl-typo"),
     r"arms\[4\]\.train_set': 'rl-typo' is not a train set"),
    ("unknown arm kind", lambda r: _arm(r, "rl").update(kind="dpo"), r"arms\[4\]\.kind'.*'dpo' is not one of"),
    ("arm name with a path", lambda r: _arm(r, "rl").update(name="../../etc"),
     r"arms\[4\]\.name': '\.\./\.\./etc' does not match"),
    ("arm name with shell text", lambda r: _arm(r, "rl").update(name="rl; rm -rf ~"),
     r"arms\[4\]\.name': 'rl; rm -rf ~' does not match"),
    ("benchmark name with a slash", lambda r: r["benchmarks"][0].update(name="synth/count"),
     r"benchmarks\[0\]\.name': 'synth/count' does not match"),
    ("trust_remote_code not a boolean", lambda r: r["base_model"].update(trust_remote_code="yes"),
     r"base_model\.trust_remote_code': 'yes' is not of type 'boolean'"),
    ("grading failure share above 1", lambda r: r["grading"].update(max_failure_share=2),
     r"grading\.max_failure_share': 2 is greater than the maximum of 1"),
    ("negative grading time limit", lambda r: r["grading"].update(timeout_s=-1),
     r"grading\.timeout_s': -1 is less than or equal to the minimum of 0"),
]


@pytest.mark.parametrize("case,mutate,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_named(case, mutate, message):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_empty_config_file_is_named(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections, got NoneType.*empty"):
        load_config_file(tmp_path / "empty.yaml")


# -------------------------------------------------------------------------------------------- data

KW = dict(seed=3, image_size=56, max_objects=4)
GOOD = build_benchmark("b", 4, {"count_all": 1.0, "exists": 1.0}, **KW)


def _png_truncated() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), "red").save(buf, format="PNG")
    return buf.getvalue()[:40]


def _with(k: int, **fields) -> list[dict]:
    rows = copy.deepcopy(GOOD)
    rows[k] = {**rows[k], **fields}
    return rows


DATA_CASES = [
    # (case, rows, the message the user sees)
    ("missing answer (null)", _with(1, answer=None), r"row id='b/00001' in (?P<file>\S+): no answer"),
    ("truncated image", _with(2, images=[_png_truncated()]), r"row id='b/00002' in \S+: image 0 is unreadable"),
    ("empty image bytes", _with(0, images=[b""]), r"row id='b/00000' in \S+: image 0 is unreadable"),
    ("empty question set", [], r"question set \S+ is empty"),
    ("duplicate question ids", [*GOOD, copy.deepcopy(GOOD[3])], r"row id='b/00003' in \S+: duplicate question id"),
    ("unknown answer type", _with(0, answer_type="number"), r"row id='b/00000' in \S+: answer_type 'number' not in"),
    ("meta that is not JSON", _with(3, meta="{oops"), r"row id='b/00003' in \S+: meta is not JSON"),
    ("empty id", _with(2, id=""), r"empty or non-string id"),
    # images as datasets ship them (each accepted form has its own test in tests/test_images.py)
    ("decompression-bomb image", _with(1, images=[_bomb()]),
     r"row id='b/00001' in \S+: image 0 is refused: 8000x8000 = 64000000 pixels is more than the limit"),
    ("SVG instead of an image", _with(2, images=[b'<svg xmlns="http://www.w3.org/2000/svg"/>']),
     r"row id='b/00002' in \S+: image 0 is unreadable \(an SVG \(vector\) file"),
    ("text file instead of an image", _with(0, images=[b"question,answer\n"]),
     r"row id='b/00000' in \S+: image 0 is unreadable \(text, not an image"),
    ("animated GIF", _with(3, images=[_animated_gif()]),
     r"row id='b/00003' in \S+: image 0 is refused: an animated or multi-page GIF with 3 frames"),
]


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "results" / "data" / "bench" / "b.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(rows), path)
    return path


def _sample_stage(path: Path):
    """What rules sample_difficulty / evaluate run on a benchmark file (before any generation)."""
    from synergy.generate import SamplingConfig
    from synergy.sampling import sample_and_grade

    return sample_and_grade(None, None, read_rows(path), SamplingConfig(), reasoning=False,
                            image_position="after_text", grader=None, path=str(path))


def _grpo_script_stage(path: Path):
    """What scripts/train_grpo.py (and train_sft.py) run on a training set before training."""
    validate_rows(read_rows(path), str(path))


def _grpo_stage(rows, tmp_path):
    from synergy.train.grpo import train_grpo

    cfg = GRPOSettings(learning_rate=1e-3, steps=1, prompts_per_step=1, mini_batch_size=1, num_generations=2)
    return train_grpo(tmp_path / "no-model-needed", rows, tmp_path / "arm", log_path=tmp_path / "log.parquet",
                      state_dir=tmp_path / "state", cfg=cfg)


def _sft_stage(rows, tmp_path):
    from synergy.train.sft_trainer import train_sft

    rows = [{**r, "response": r["response"] or "<think> x </think> \\boxed{1}"} for r in rows]
    cfg = SFTSettings(learning_rate=1e-3, batch_size=1, epochs=1, micro_batch_size=1)
    return train_sft(tmp_path / "no-model-needed", rows, tmp_path / "arm", log_path=tmp_path / "log.parquet",
                     state_dir=tmp_path / "state", cfg=cfg)


@pytest.mark.parametrize("stage", ["sampling", "train script", "grpo", "sft"])
@pytest.mark.parametrize("case,rows,message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_stops_the_stage_naming_row_and_file(case, rows, message, stage, tmp_path):
    path = _write(tmp_path, rows)
    if stage in ("grpo", "sft"):  # called with rows, as a library: the row is named (the script names the file)
        message = message.replace(r" in (?P<file>\S+)", "").replace(r" in \S+", "").replace(r" \S+ is empty", r".*is empty")
        with pytest.raises((DataError, ValueError), match=message):
            (_grpo_stage if stage == "grpo" else _sft_stage)(read_rows(path), tmp_path)
        return
    with pytest.raises(DataError, match=message) as err:
        (_sample_stage if stage == "sampling" else _grpo_script_stage)(path)
    if rows:
        assert str(path) in str(err.value)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "answer_type"} for r in GOOD]), path)
    with pytest.raises(DataError, match=rf"row id='b/00000' in {path}: missing columns \['answer_type'\]"):
        _grpo_script_stage(path)


@pytest.mark.parametrize("content", [b"", b"garbage, not parquet"], ids=["empty file", "not parquet"])
def test_unreadable_parquet_file_is_named(tmp_path, content):
    path = tmp_path / "b.parquet"
    path.write_bytes(content)
    with pytest.raises(pa.ArrowInvalid, match=str(path)):
        read_rows(path)


def test_regrading_samples_of_unknown_questions_is_named():
    samples = pl.DataFrame({"id": ["b/00000", "b/99999"], "response": ["1", "2"], "extracted": ["1", "2"],
                            "correct": [False, False], "format_ok": [False, False], "status": ["ok", "ok"]})
    with pytest.raises(DataError, match=r"row id='b/99999' in results/eval/x/b.parquet: no question with this id"):
        regrade_samples(samples, GOOD, Grader(), path="results/eval/x/b.parquet")


# ----------------------------------------------------------------------------------- model outputs

LIMIT = 1.5
HUGE_TEXT = ("Let me think about this very carefully. " * 150_000) + r"So the answer is \boxed{5}."  # ~6 MB
OUTPUT_CASES = [
    # (case, response, gold, answer type, expected correct, allowed statuses)
    ("empty", "", "5", "integer", False, {"no_answer"}),
    ("only whitespace", " \n\t ", "5", "integer", False, {"no_answer"}),
    ("not a string", None, "5", "integer", False, {"no_answer"}),
    ("enormous text (6 MB)", HUGE_TEXT, "5", "integer", True, {"ok"}),
    ("enormous number (100k digits)", r"\boxed{" + "9" * 100_000 + "}", "5", "integer", False,
     {"ok", "error", "timeout"}),
    ("enormous power", r"\boxed{10^{10^{10}}}", "5", "integer", False, {"ok", "error", "timeout"}),
    ("deeply nested braces", r"\boxed{" + "{" * 5000 + "5" + "}" * 5000 + "}", "5", "integer", False,
     {"ok", "error", "timeout", "no_answer"}),
    ("control characters and NUL", "\x00\x1b[2J\\boxed{5}\x07", "5", "integer", True, {"ok"}),
    ("unclosed box", r"<think>so</think> \boxed{\frac{1}{", "1/2", "expression", False, {"no_answer", "ok", "timeout"}),
    ("malformed LaTeX fraction", r"\boxed{\frac{}{}}", "1/2", "expression", False, {"ok", "timeout", "error"}),
    ("unbalanced \\left", r"\boxed{\left( x + 1}", "x+1", "expression", False, {"ok", "timeout", "error"}),
    ("unknown LaTeX commands", r"\boxed{\foo{\bar}^{\baz}}", "x", "expression", False, {"ok", "timeout", "error"}),
    ("cut off inside <think>", "<think> I count three and then" + " more" * 2000, "3", "integer", False,
     {"no_answer"}),
    ("tower of powers (sympy would not finish)", r"\boxed{9^{9^{9^{9}}}}", "x", "expression", False,
     {"ok", "timeout", "error"}),
]


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout_s=LIMIT) as g:
        g.grade(r"\boxed{x^2}", "x^{2}+0", "expression")  # start the worker outside the timed calls
        yield g


@pytest.mark.parametrize("case,response,gold,atype,correct,statuses", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_bad_model_output_is_graded_counted_and_never_hangs(grader, case, response, gold, atype, correct, statuses):
    grader.grade(r"\boxed{x^2}", "x^{2}+0", "expression")  # (re)start the worker: its start-up has its own limit
    before = dict(grader.stats)
    t0 = time.monotonic()
    g = grader.grade(response, gold, atype)
    elapsed = time.monotonic() - t0
    assert g.correct is correct and g.status in statuses, g
    assert elapsed < LIMIT + 2.0, elapsed
    assert grader.stats["graded"] == before["graded"] + 1
    counter = {"timeout": "timeouts", "error": "errors", "no_answer": "no_answer", "ambiguous": "ambiguous"}
    if g.status in counter:  # counted where the stage's log reports it
        assert grader.stats[counter[g.status]] == before[counter[g.status]] + 1
    # the grader still works after any of these
    assert grader.grade(r"\boxed{7}", "7", "integer").correct


def test_bad_outputs_are_kept_counted_and_reported_by_the_sampling_stage(monkeypatch, caplog):
    """Through sample_and_grade (rules sample_difficulty / evaluate): every output is kept with its status,
    and timeouts / errors are reported in the job's log with the way to re-grade them."""
    from synergy import sampling
    from synergy.generate import Completion, SamplingConfig

    rows = [make_row(id="q/0", bench="q", question="Simplify.", answer="x^{100000}", answer_type="expression")]
    outputs = ["", "\x00" * 10_000, r"\boxed{\frac{}{}}", r"\boxed{(x+1)^{100000}}"]  # the last: sympy takes minutes

    def fake_generate(model, processor, prompts, cfg, progress=None):  # the model is not under test here
        return [[Completion(text=t, num_tokens=len(t) // 4, truncated=False) for t in outputs] for _ in prompts]

    monkeypatch.setattr(sampling, "generate", fake_generate)
    caplog.set_level(logging.WARNING, logger="synergy.sampling")
    with Grader(timeout_s=1.0) as grader:
        df = sampling.sample_and_grade(None, None, rows, SamplingConfig(n=len(outputs)), reasoning=False,
                                       image_position="after_text", grader=grader, path="results/data/bench/q.parquet")
    assert df.height == len(outputs) and df["response"].to_list() == outputs  # nothing dropped, raw text kept
    assert set(df["status"]) <= set(STATUSES) and df["status"][0] == "no_answer" and df["status"][3] == "timeout"
    assert not df["correct"].any()
    n_timeout, n_error = (int((df["status"] == s).sum()) for s in ("timeout", "error"))
    assert f"{n_timeout + n_error} of 4 samples of results/data/bench/q.parquet could not be graded ({n_timeout} " \
           f"timeouts, {n_error} errors)" in caplog.text and "scripts/regrade.py" in caplog.text
