"""The optional LLM judge (paper §2.4): which samples it reads, how its reply is graded, the with/without table."""
import polars as pl
import pytest

from synergy.data.schema import make_row, to_table
from synergy.grading import Grader
from synergy.io import write_parquet
from synergy.judge import JudgeConfig, apply_judge, judge_effect, judge_file, judge_prompt, parse_judge_answer, to_judge
from synergy.sampling import SAMPLE_SCHEMA

CFG = JudgeConfig.from_dict({"enabled": True, "model": {"local_path": "x"},
                             "sampling": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 8}})
ROWS = {
    "b/1": make_row(id="b/1", bench="b", question="Which colour?", options=["red", "blue"], answer="B",
                    answer_type="multiple_choice"),
    "b/2": make_row(id="b/2", bench="b", question="How many?", answer="7", answer_type="integer"),
}


def samples(statuses, correct, truncated=None, ids=None) -> pl.DataFrame:
    n = len(statuses)
    ids = ids or ["b/1"] * n
    return pl.DataFrame({"bench": ["b"] * n, "id": ids, "sample": list(range(n)), "response": ["..."] * n,
                         "num_tokens": [5] * n, "truncated": truncated or [False] * n, "extracted": [None] * n,
                         "correct": correct, "format_ok": [False] * n, "status": statuses}, schema=SAMPLE_SCHEMA)


@pytest.mark.parametrize("text,expected", [("B", "B"), ("Final answer: 7.\nbecause", "7"), ("  None", None),
                                           ("", None), ("**Answer: $x^2$**", "$x^2$")])
def test_judge_replies_are_parsed_to_one_answer(text, expected):
    assert parse_judge_answer(text) == expected


def test_only_unextracted_untruncated_samples_are_judged():
    df = samples(["ok", "no_answer", "ambiguous", "no_answer", "timeout"], [True, False, False, False, False],
                 truncated=[False, False, False, True, False])
    assert to_judge(df, CFG).to_list() == [False, True, True, False, False]


def test_judge_answers_are_graded_by_the_one_grader():
    df = samples(["ok", "no_answer", "ambiguous", "no_answer"], [True, False, False, False],
                 ids=["b/1", "b/1", "b/2", "b/2"])
    with Grader(10) as grader:
        out = apply_judge(df, ROWS, ["(B)", "6", "None"], grader, CFG)
    assert out["correct"].to_list() == [True, True, False, False]
    assert out["correct_rules"].to_list() == [True, False, False, False]
    assert out["judged"].to_list() == [False, True, True, True] and out["judge_answer"].to_list() == [None, "(B)", "6", None]
    with pytest.raises(ValueError, match="2 judge replies for 3 judged samples"):
        apply_judge(df, ROWS, ["B", "7"], grader, CFG)


def test_judge_prompt_shows_options_and_the_end_of_the_response():
    text = judge_prompt(ROWS["b/1"], "x" * 50 + "THE END", 10).messages[0]["content"][0]["text"]
    assert "A. red\nB. blue" in text and "xxxTHE END" in text and "x" * 11 not in text


def test_judge_effect_reports_accuracy_with_and_without():
    df = samples(["ok", "no_answer"], [True, False]).with_columns(pl.lit("rl").alias("arm"))
    with Grader(10) as grader:
        judged = apply_judge(df, ROWS, ["B"], grader, CFG)
    row = judge_effect(judged).row(0, named=True)
    assert (row["accuracy_rules"], row["accuracy_judge"], row["judged"], row["judge_made_correct"]) == (50.0, 100.0, 1, 1)


def test_judge_file_runs_a_model_on_the_unextracted_samples(tmp_path, tiny_model_dir):
    bench = tmp_path / "b.parquet"
    write_parquet(to_table(ROWS.values()), bench)
    evals = tmp_path / "e.parquet"
    write_parquet(samples(["ok", "no_answer", "no_answer"], [True, False, False], ids=["b/1", "b/1", "b/2"])
                  .with_columns(pl.lit("rl").alias("arm")).to_arrow(), evals)
    out = judge_file(str(evals), str(bench), str(tiny_model_dir), CFG)
    assert out["judged"].to_list() == [False, True, True] and out["judge_raw"].null_count() == 1
    assert out["correct"][0] is True and set(out.columns) >= {"arm", "correct_rules", "judge_answer"}


def test_enabled_judge_adds_one_job_per_evaluation_and_the_table(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("judge: {enabled: true}\n")
    out = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-s", str(root / "Snakefile"),
                          "--directory", str(tmp_path), "results/tables/judge_effect.csv", "--configfile", str(cfg),
                          "-n", "--forceall", "--quiet", "rules"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, re.M))
    # one judge job per (arm, benchmark); evaluation.per_job: arm runs one evaluate job per arm
    assert int(counts["judge"]) == int(counts["evaluate"]) * 5 and int(counts["judge"]) >= 35
    assert counts["tabulate_judge"] == "1"
