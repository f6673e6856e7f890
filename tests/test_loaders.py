"""Dataset loaders on fixtures written in each dataset's published schema (tests/fixtures/hf_datasets.py)."""
import json

import pyarrow as pa
import pytest

from fixtures import hf_datasets as F
from synergy.data.loaders import load_set
from synergy.data.loaders.common import paper_level_tag, split_embedded_options
from synergy.data.schema import DataError
from synergy.difficulty import levels_from_tags
from synergy.grading import Grader, check_format
from synergy.prompts import format_question


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout_s=10) as g:
        yield g


def load(name, root, **spec):
    return load_set({"name": name, "loader": spec.pop("loader", name), "local_path": str(root), **spec}, root)


def by_id(result):
    return {r["id"]: r for r in result.rows}


def meta(row):
    return json.loads(row["meta"])


def boxed(answer: str) -> str:
    return f"<think>\nworking\n</think>\n\nSo the answer is \\boxed{{{answer}}}."


# --------------------------------------------------------------------------- benchmarks


def test_mathvision_keeps_answer_types_and_competition_level(tmp_path, grader):
    rows = by_id(load("mathvision", F.write_mathvision(tmp_path)))
    mc, count, drawn, ratio = rows["mathvision/1"], rows["mathvision/2"], rows["mathvision/3"], rows["mathvision/4"]
    assert (mc["answer_type"], mc["answer"], mc["options"]) == ("multiple_choice", "B", ["circle", "square", "star"])
    assert format_question(mc).endswith("A. circle\nB. square\nC. star")
    assert (count["answer_type"], ratio["answer_type"]) == ("integer", "expression")
    # options drawn in the image: letters kept for grading, not listed again in the prompt
    assert drawn["options"] == list("ABCDE") and meta(drawn)["render_options"] is False
    assert format_question(drawn) == drawn["question"]
    assert meta(mc)["competition_level"] == 3 and "paper_level" not in meta(mc)  # MathVision's own level, renamed
    assert mc["images"][0] == F.png("red")
    assert grader.grade_many([{**ratio, "response": boxed("1.5")}, {**mc, "response": boxed("square")}])[0].correct
    assert grader.grade_many([{**mc, "response": boxed("square")}])[0].correct


def test_mathvision_malformed_row_is_named(tmp_path):
    bad = {**F.mathvision_rows()[0], "id": "99", "answer": "F"}
    with pytest.raises(DataError, match=r"row id='mathvision/99' in .*test-00000-of-00001.parquet: .*'F'"):
        load("mathvision", F.write_mathvision(tmp_path, F.mathvision_rows() + [bad]))


def test_mathverse_splits_choices_and_keeps_vision_only_questions(tmp_path, grader):
    res = load("mathverse", F.write_mathverse(tmp_path))
    rows = by_id(res)
    text = rows["mathverse/1"]
    assert text["options"] == ["40°", "60°", "120°", "140°"] and text["answer"] == "D"
    assert "Choices" not in text["question"] and text["question"].endswith("angle CED is ()")
    vision_only = rows["mathverse/5"]
    assert vision_only["question"].startswith("According to the question shown in the image")
    assert meta(vision_only)["render_options"] is False and vision_only["options"] == list("ABCD")
    assert (rows["mathverse/6"]["answer_type"], rows["mathverse/7"]["answer_type"]) == ("expression", "float")
    assert meta(text)["problem_version"] == "Text Dominant" and meta(text)["subject"] == "Plane Geometry"
    assert res.notes["mathverse: empty question, query_wo used"] == 1
    grades = grader.grade_many([{**text, "response": boxed("140°")}, {**rows["mathverse/6"], "response": boxed("\\sqrt{12}")}])
    assert [g.correct for g in grades] == [True, True]


def test_mathverse_where_filters_versions(tmp_path):
    res = load("mathverse", F.write_mathverse(tmp_path), where={"problem_version": ["Vision Only", "Text Lite"]})
    assert sorted(by_id(res)) == ["mathverse/5", "mathverse/6"]


def test_mathverse_malformed_row_is_named(tmp_path):
    bad = {**F.mathverse_rows()[2], "sample_index": "42", "question_type": "essay"}
    with pytest.raises(DataError, match=r"row id='mathverse/42' in .*testmini.parquet: question_type 'essay'"):
        load("mathverse", F.write_mathverse(tmp_path, F.mathverse_rows() + [bad]))


def test_mathvista_maps_choices_to_letters_and_keeps_unit_and_precision(tmp_path, grader):
    rows = by_id(load("mathvista", F.write_mathvista(tmp_path)))
    work, side, mc = rows["mathvista/1"], rows["mathvista/2"], rows["mathvista/3"]
    assert (work["answer_type"], work["precision"]) == ("float", 1)
    assert (side["answer_type"], side["unit"]) == ("integer", "cm")
    assert (mc["answer"], mc["options"][2]) == ("C", "\\sqrt{13}")
    assert meta(work)["query"].startswith("Hint:") and meta(work)["task"] == "geometry problem solving"
    # the query's hint (decimals, unit) is part of the question, as VLMEvalKit prompts it
    assert work["question"].startswith("Hint: Please answer the question requiring a floating-point number with one "
                                       "decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.\n"
                                       "Question: When a spring does work on an object")
    assert side["question"] == "Hint: integer answer\nQuestion: What is the length of the side?"
    assert mc["question"] == "Find x."  # its query has no hint line: kept as written
    grades = grader.grade_many([{**work, "response": boxed("1.24")}, {**side, "response": boxed("14 cm")},
                                {**mc, "response": boxed("C")}, {**work, "response": boxed("1.3")}])
    assert [g.correct for g in grades] == [True, True, True, False]


def test_mathvista_malformed_row_is_named(tmp_path):
    bad = {**F.mathvista_rows()[2], "pid": "777", "answer": "11"}
    with pytest.raises(DataError, match=r"row id='mathvista/777' .*answer '11' is neither one of the options"):
        load("mathvista", F.write_mathvista(tmp_path, F.mathvista_rows() + [bad]))


def test_mmmu_reads_every_subject_folder_of_the_split(tmp_path, grader):
    res = load("mmmu", F.write_mmmu(tmp_path))
    rows = by_id(res)
    assert sorted(rows) == ["mmmu/validation_Accounting_1", "mmmu/validation_Accounting_2", "mmmu/validation_Art_1"]
    art, open_q = rows["mmmu/validation_Art_1"], rows["mmmu/validation_Accounting_2"]
    assert len(art["images"]) == 3 and art["options"] == ["<image 2>", "<image 3>"] and meta(art)["subject"] == "Art"
    assert (open_q["answer"], open_q["answer_type"], meta(open_q)["accepted_answers"]) == ("24", "integer", ["24", "24.0"])
    assert len(open_q["images"]) == 2
    assert res.files == ["Accounting/validation-00000-of-00001.parquet", "Art/validation-00000-of-00001.parquet"]
    only_art = load("mmmu", tmp_path, subsets=["Art"])
    assert [r["id"] for r in only_art.rows] == ["mmmu/validation_Art_1"]
    assert grader.grade_many([{**rows["mmmu/validation_Accounting_1"], "response": boxed("B")}])[0].correct


def test_mmmu_malformed_options_are_named(tmp_path):
    subjects = F.mmmu_subjects()
    subjects["Art"].append(F.mmmu_row("validation_Art_2", options="['a', 'b'"))
    with pytest.raises(DataError, match=r"row id='mmmu/validation_Art_2' in .*Art/validation.*not a Python list"):
        load("mmmu", F.write_mmmu(tmp_path, subjects))


def test_mmstar_splits_embedded_options(tmp_path, grader):
    rows = by_id(load("mmstar", F.write_mmstar(tmp_path)))
    rel = rows["mmstar/0"]
    assert rel["question"] == "Which option describe the object relationship in the image correctly?"
    assert rel["options"][1] == "The suitcase is beneath the cat." and rel["answer"] == "A"
    assert meta(rows["mmstar/1"])["category"] == "math"
    grades = grader.grade_many([{**rows["mmstar/1"], "response": boxed("C")}, {**rel, "response": boxed("B")}])
    assert [g.correct for g in grades] == [True, False]


def test_mmstar_malformed_row_is_named_or_skipped_and_counted(tmp_path):
    rows = F.mmstar_rows() + [{**F.mmstar_rows()[1], "index": 9, "image": None}]
    root = F.write_mmstar(tmp_path, rows)
    with pytest.raises(DataError, match=r"row id='mmstar/9' in .*mmstar.parquet: no image"):
        load("mmstar", root)
    res = load("mmstar", root, on_bad_row="skip")
    assert len(res.rows) == 2 and res.skipped == [("mmstar/9", "no image")]


# --------------------------------------------------------------------------- the paper's difficulty-tagged copies


def test_paper_levels_come_from_the_tag_column(tmp_path):
    rows = [{**r, "difficulty_level": lv} for r, lv in zip(F.mathvision_rows(), ["L1", "L3", "5", "level 2"])]
    root = F.write_mathvision(tmp_path, rows, extra={"difficulty_level": pa.string()})
    res = load("mathvision", root, levels="paper", level_column="difficulty_level")
    assert [meta(r)["paper_level"] for r in res.rows] == ["L1", "L3", "L5", "L2"]
    levels = levels_from_tags(res.rows, 16, (12, 8, 5, 2))
    assert levels["level"].to_list() == ["L1", "L3", "L5", "L2"] and levels["passes"].null_count() == 4


def test_paper_pass_counts_are_binned_with_the_thresholds(tmp_path):
    rows = [{**r, "passes": p} for r, p in zip(F.mmstar_rows(), [12, 4])]
    root = F.write_mmstar(tmp_path, rows, extra={"passes": pa.int64()})
    res = load("mmstar", root, levels="paper", level_column="passes", level_format="passes")
    levels = levels_from_tags(res.rows, 16, (12, 8, 5, 2))
    assert levels.select("passes", "level").rows() == [(12, "L1"), (4, "L4")]


def test_unknown_level_column_lists_the_columns_present(tmp_path):
    root = F.write_mathvista(tmp_path)
    with pytest.raises(DataError, match=r"needs column\(s\) \['difficulty'\].*columns present: \[.*'pid'.*'query'"):
        load("mathvista", root, levels="paper", level_column="difficulty")


def test_bad_level_tag_is_named(tmp_path):
    rows = [{**r, "difficulty_level": lv} for r, lv in zip(F.mathverse_rows(), ["L1", "L2", "hard", "L4"])]
    root = F.write_mathverse(tmp_path, rows, extra={"difficulty_level": pa.string()})
    with pytest.raises(DataError, match=r"row id='mathverse/6' .*difficulty tag 'hard' is not a level"):
        load("mathverse", root, levels="paper", level_column="difficulty_level")


def test_level_tags_accept_the_plausible_encodings():
    assert [paper_level_tag(v, "level")["paper_level"] for v in (1, 3.0, "L4", "level_5", "2")] == \
        ["L1", "L3", "L4", "L5", "L2"]
    assert paper_level_tag("16", "passes") == {"paper_passes": 16}
    with pytest.raises(ValueError):
        paper_level_tag("6", "level")
    with pytest.raises(ValueError):
        paper_level_tag("-1", "passes")


# --------------------------------------------------------------------------- layout errors, subsampling


def test_no_matching_file_lists_the_files_present(tmp_path):
    F.write_mathvision(tmp_path, split="testmini")
    with pytest.raises(DataError, match=r"no data file .* matches \['data/test-\*.parquet'\]; files there: "
                                        r"\['data/testmini-00000-of-00001.parquet'\]"):
        load("mathvision", tmp_path)


def test_missing_column_lists_the_columns_present(tmp_path):
    root = tmp_path / "mmstar"
    F._write(root / "mmstar.parquet", [{"index": 0, "prompt": "x"}],
             pa.schema([("index", pa.int64()), ("prompt", pa.string())]))
    with pytest.raises(DataError, match=r"needs column\(s\) \['question', 'image', 'answer'\].*\['index', 'prompt'\]"):
        load("mmstar", root)


def test_num_questions_draws_a_deterministic_subset(tmp_path):
    root = F.write_mathvision(tmp_path)
    a, b = load("mathvision", root, num_questions=2), load("mathvision", root, num_questions=2)
    assert [r["id"] for r in a.rows] == [r["id"] for r in b.rows] and len(a.rows) == 2


def test_embedded_options_need_consecutive_letters():
    assert split_embedded_options("Q\nChoices:\nA:1\nC:3") is None
    assert split_embedded_options("Q?\nA. 1/2\nB. 2/3") == ("Q?", ["1/2", "2/3"])
    assert split_embedded_options("Q\nOptions: A: x, y, B: z") == ("Q", ["x, y", "z"])


def test_mmstar_options_split_only_at_comma_letter_colon():
    """A letter with a separator inside an option ("Vitamin B. rich bread") never starts an option."""
    q = "Which food is richest in vitamin B?\nOptions: A: Vitamin B. rich bread, B: apple, C: water, D: salt"
    assert split_embedded_options(q) == ("Which food is richest in vitamin B?",
                                         ["Vitamin B. rich bread", "apple", "water", "salt"])
    q = "Which one?\nOptions: A: plan A: the first, B: plan B, C: C. elegans, D: none"
    assert split_embedded_options(q)[1] == ["plan A: the first", "plan B", "C. elegans", "none"]
    assert split_embedded_options("Q\nOptions: A. x, B. y") == ("Q", ["x", "y"])  # the same separator throughout
    assert split_embedded_options("Q\nOptions: A: x, B. y") is None  # mixed separators: not MMStar's layout


# --------------------------------------------------------------------------- training sets


def test_s1k_gemini_traces_are_in_the_think_format(tmp_path):
    res = load("s1-gemini", F.write_s1k(tmp_path), loader="s1k", style="trace", trace="gemini", modality="text")
    first, second = res.rows
    assert first["response"] == "<think>\nI add 2 and 3.\nThat is 5.\n</think>\n\nThe answer is $\\boxed{5}$."
    assert check_format(first["response"]) and first["answer"] == "5" and first["images"] == []
    assert second["answer"] == "x = 4 because ..."  # no \boxed{} in the attempt: the reference solution
    assert res.notes["s1k: gemini attempt without \\boxed{} (gold = solution)"] == 1
    assert meta(first) == {"cot_type": "math", "source_type": "qq8933/AIME", "trace": "gemini"}


def test_s1k_11_reads_the_deepseek_or_gemini_columns(tmp_path):
    root = F.write_s1k(tmp_path, version="1.1")
    r1 = load("s1.1-r1", root, loader="s1k", style="trace", trace="deepseek").rows[0]
    assert r1["response"].startswith("<think>\nOkay, 2 + 3. Wait") and r1["response"].endswith("\\boxed{5}")
    gemini = load("g", root, loader="s1k", style="trace", trace="gemini").rows[0]
    assert gemini["response"] == "<think>\nAdd them.\n</think>\n\n$\\boxed{5}$"
    queries = load("q", root, loader="s1k", style="none", trace="deepseek").rows[0]
    assert queries["response"] is None


def test_s1k_malformed_trace_is_named(tmp_path):
    rows = F.s1k11_rows() + [{**F.s1k11_rows()[0], "deepseek_thinking_trajectory": ""}]
    root = F.write_s1k(tmp_path, rows, version="1.1")
    with pytest.raises(DataError, match=r"row id='s1.1-r1/train-00000-of-00001:00001' .*empty deepseek trace"):
        load("s1.1-r1", root, loader="s1k", style="trace", trace="deepseek")


def test_s1k_without_the_trace_columns_lists_the_columns(tmp_path):
    root = F.write_s1k(tmp_path)  # s1K 1.0 has no deepseek trace
    with pytest.raises(DataError, match=r"no deepseek trace.*columns present: \[.*'thinking_trajectories'"):
        load("s", root, loader="s1k", style="trace", trace="deepseek")


def test_eureka_traces_and_queries(tmp_path, grader):
    root = F.write_eureka_parquet(tmp_path)
    res = load("eureka", root, loader="eureka_distill", style="trace")
    count, choice = res.rows
    assert count["question"] == "How many red squares are there?" and count["answer_type"] == "integer"
    assert choice["question"] == "Which is larger?" and choice["options"] == ["1/2", "2/3"]
    assert (choice["answer"], choice["answer_type"]) == ("B", "multiple_choice")
    assert all(check_format(r["response"]) for r in res.rows)
    assert res.notes["eureka: reasoning instruction removed from the question (the rules append it)"] == 1
    assert [g.correct for g in grader.grade_many(res.rows)] == [True, True]  # the traces solve their questions
    rl = load("rl", root, loader="eureka_distill", style="none")
    assert [r["response"] for r in rl.rows] == [None, None] and rl.rows[0]["images"] == [F.png("red")]


def test_eureka_sharegpt_layout_with_images_in_a_zip(tmp_path):
    root = F.write_eureka_sharegpt(tmp_path)
    row = load("eureka", root, loader="eureka_distill", style="trace").rows[0]
    assert (row["id"], row["question"], row["answer"]) == ("eureka/q1", "What colour is the picture?", "red")
    assert row["images"] == [F.png("red")] and row["response"].endswith("\\boxed{red}")


def test_eureka_missing_image_is_named(tmp_path):
    root = F.write_eureka_sharegpt(tmp_path)
    (root / "images.zip").unlink()
    with pytest.raises(DataError, match=r"row id='eureka/q1' in .*train.json: image 'images/0001.png' not found"):
        load("eureka", root, loader="eureka_distill", style="trace")


def test_eureka_unknown_layout_lists_columns_and_columns_option_maps_it(tmp_path):
    rows = [{"uid": "7", "problem": "2+2?", "gt": "4", "solution_trace": "<think>\nadd\n</think>\n\n\\boxed{4}",
             "pictures": [F.img("red")]}]
    schema = pa.schema([("uid", pa.string()), ("problem", pa.string()), ("gt", pa.string()),
                        ("solution_trace", pa.string()), ("pictures", pa.list_(F.IMAGE))])
    F._write(tmp_path / "train.parquet", rows, schema)
    with pytest.raises(DataError, match=r"no response \(trace\).*columns present: \['gt', 'pictures', 'problem'"):
        load("eureka", tmp_path, loader="eureka_distill", style="trace")
    row = load("eureka", tmp_path, loader="eureka_distill", style="trace",
               columns={"response": "solution_trace", "images": "pictures"}).rows[0]
    assert (row["id"], row["answer"], len(row["images"])) == ("eureka/7", "4", 1) and check_format(row["response"])
