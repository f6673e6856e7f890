"""The embedded synthetic suite: determinism, train/eval disjointness, trace format, bad rows."""
import json

import pyarrow.parquet as pq
import pytest

from synergy.data.schema import DataError, make_row, to_table, validate_rows
from synergy.data.suite import build_benchmark, build_train_set, question_keys
from synergy.data.synthetic import TEMPLATES
from synergy.grading import check_format, grade_row
from synergy.prompts import build_prompt

ALL = {t: 1.0 for t in TEMPLATES}
KW = dict(seed=3, image_size=112, max_objects=9)


def test_benchmark_is_deterministic_from_seed():
    a = build_benchmark("b", 40, ALL, **KW)
    b = build_benchmark("b", 40, ALL, **KW)
    c = build_benchmark("b", 40, ALL, **{**KW, "seed": 4})
    assert a == b
    assert [r["question"] for r in a] != [r["question"] for r in c]


def test_benchmark_mixes_perception_reasoning_and_answer_types():
    rows = build_benchmark("b", 200, ALL, **KW)
    metas = [json.loads(r["meta"]) for r in rows]
    assert {m["tier"] for m in metas} == {"perception", "reasoning"}
    assert {r["answer_type"] for r in rows} == {"integer", "multiple_choice"}
    assert len(question_keys(rows)) == len(rows)  # no repeated question


def test_train_sets_are_disjoint_from_benchmarks_even_on_the_same_stream():
    bench = build_benchmark("same", 150, {"bar_height": 1.0}, **KW)
    # the same name and seed draw the same random stream: without exclusion the sets would coincide
    naive = build_train_set("same", 150, {"bar_height": 1.0}, style="none", modality="image", exclude=set(), **KW)
    assert question_keys(naive) & question_keys(bench)
    train = build_train_set("same", 150, {"bar_height": 1.0}, style="none", modality="image",
                            exclude=question_keys(bench), **KW)
    assert not question_keys(train) & question_keys(bench)


@pytest.mark.parametrize("style,modality", [("short", "image"), ("reflective", "text"), ("reflective_short", "image")])
def test_correct_trace_styles_are_well_formed_and_graded_correct(style, modality):
    rows = build_train_set("t", 60, ALL, style=style, modality=modality, exclude=set(), reasoning_share=1.0, **KW)
    for r in rows:
        assert check_format(r["response"]), r["response"]
        assert grade_row(None, r["response"], r).correct, r["response"]


def test_verbose_traces_are_long_and_partly_wrong():
    verbose = build_train_set("v", 200, ALL, style="verbose", modality="text", exclude=set(), error_rate=0.2, **KW)
    reflective = build_train_set("v", 200, ALL, style="reflective", modality="text", exclude=set(), **KW)
    wrong = sum(not grade_row(None, r["response"], r).correct for r in verbose)
    assert 20 <= wrong <= 60  # about 20 % of 200
    mean_len = lambda rows: sum(len(r["response"]) for r in rows) / len(rows)  # noqa: E731
    assert mean_len(verbose) > 1.2 * mean_len(reflective)
    assert all(r["response"].count("Yes, that is consistent.") == 2 for r in reflective)  # two verification rounds


def test_text_sets_describe_the_scene_instead_of_showing_it():
    rows = build_train_set("t", 20, ALL, style="reflective", modality="text", exclude=set(), **KW)
    assert all(not r["images"] and ("grid shows" in r["question"] or "bar chart" in r["question"]) for r in rows)


def test_text_share_mixes_described_and_shown_scenes():
    rows = build_train_set("p", 200, ALL, style="short", modality="image", exclude=set(), reasoning_share=0.5,
                           text_share=0.25, **KW)
    text = [r for r in rows if not r["images"]]
    assert 30 <= len(text) <= 70                                     # about a quarter of 200
    assert all("grid shows" in r["question"] or "bar chart" in r["question"] for r in text)
    plain = build_train_set("p", 50, ALL, style="short", modality="image", exclude=set(), reasoning_share=0.5, **KW)
    assert all(r["images"] for r in plain)                           # text_share 0: every row shows its picture
    with pytest.raises(ValueError, match="text_share"):
        build_train_set("t", 5, ALL, style="reflective", modality="text", exclude=set(), text_share=0.5, **KW)


def test_short_style_answers_like_an_instruct_model():
    rows = build_train_set("p", 40, ALL, style="short", modality="image", exclude=set(), reasoning_share=0.5, **KW)
    with_instr = [r for r in rows if json.loads(r["meta"])["reasoning"]]
    without = [r for r in rows if not json.loads(r["meta"])["reasoning"]]
    assert with_instr and without
    assert all(check_format(r["response"]) for r in with_instr)
    assert all(r["response"].startswith("The answer is") for r in without)


def _row(**kw):
    base = dict(id="x/1", bench="x", question="How many?", answer="3", answer_type="integer")
    return make_row(**{**base, **kw})


def test_row_without_answer_names_row_and_file():
    with pytest.raises(DataError, match=r"row id='x/1' in data/x.parquet: no answer"):
        validate_rows([_row(answer="")], "data/x.parquet")


def test_unreadable_image_names_row_and_file():
    with pytest.raises(DataError, match=r"row id='x/1' in f.parquet: image 0 is unreadable"):
        validate_rows([_row(images=[b"not a png"])], "f.parquet")
    with pytest.raises(DataError, match=r"row id='x/1' in f.parquet: image 0 is unreadable"):
        build_prompt(_row(images=[b"\x89PNG broken"]), reasoning=False, path="f.parquet")


def test_empty_set_and_duplicate_ids_fail():
    with pytest.raises(DataError, match="empty"):
        validate_rows([], "f.parquet")
    with pytest.raises(DataError, match="duplicate question id"):
        validate_rows([_row(), _row()], "f.parquet")


def test_multiple_choice_answer_must_be_an_option_letter():
    with pytest.raises(DataError, match="not an option letter"):
        validate_rows([_row(answer="C", answer_type="multiple_choice", options=["a", "b"])])


def test_canonical_parquet_round_trip(tmp_path):
    rows = build_benchmark("b", 10, ALL, **KW)
    pq.write_table(to_table(rows), tmp_path / "b.parquet")
    back = pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert back == rows


def test_sampling_stage_rejects_a_bad_benchmark_row_before_generating():
    from synergy.generate import SamplingConfig
    from synergy.sampling import sample_and_grade

    good = build_benchmark("b", 3, ALL, **KW)
    bad = [*good[:2], {**good[2], "images": [b"garbage"]}]
    with pytest.raises(DataError, match=r"row id='b/00002' in results/data/bench/b.parquet: image 0 is unreadable"):
        sample_and_grade(None, None, bad, SamplingConfig(), reasoning=False, image_position="after_text",
                         grader=None, path="results/data/bench/b.parquet")
