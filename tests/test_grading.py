"""Tests for synergy.grading: extraction, verification by answer type, format, reward, time limit,
threads and worker processes."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synergy import grading
from synergy.data.schema import ANSWER_TYPES
from synergy.grading import (
    STATUSES,
    Grade,
    Grader,
    check_format,
    extract_answer,
    grade,
    grade_row,
    reward,
)

COLORS = ["red", "blue", "green"]
ABCD = ["red", "blue", "green", "yellow"]

# (response, gold, answer_type, options, precision, unit, expected correct, expected status)
CASES = [
    # LaTeX fractions
    (r"\boxed{\frac{3}{4}}", "0.75", "float", [], None, None, True, "ok"),
    (r"\boxed{\frac{3}{4}}", "3/4", "float", [], None, None, True, "ok"),
    (r"\boxed{\frac{3}{4}}", "3/4", "expression", [], None, None, True, "ok"),
    (r"\boxed{\dfrac{3}{4}}", "0.75", "float", [], 2, None, True, "ok"),
    (r"\boxed{-\frac{1}{2}}", "-0.5", "float", [], None, None, True, "ok"),
    (r"\boxed{\frac{2}{3}}", "0.75", "float", [], None, None, False, "ok"),
    (r"The answer is $\frac{1}{2}$.", "0.5", "float", [], None, None, True, "ok"),
    # nested / structured boxes
    (r"\boxed{\boxed{5}}", "5", "integer", [], None, None, True, "ok"),
    (r"\boxed{\sqrt{2}}", r"\sqrt{2}", "expression", [], None, None, True, "ok"),
    (r"\boxed{\sqrt{2}}", "2^{1/2}", "expression", [], None, None, True, "ok"),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", "expression", [], None, None, True, "ok"),
    (r"\boxed{x^2+1}", "(x+1)^2", "expression", [], None, None, False, "ok"),
    (r"\fbox{7}", "7", "integer", [], None, None, True, "ok"),
    (r"\boxed{\sqrt{16}}", "4", "integer", [], None, None, True, "ok"),
    # multiple choice: letters in their decorations
    ("(B)", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    ("B.", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    ("B)", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    ("The answer is B", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    ("The answer is B", "A", "multiple_choice", COLORS, None, None, False, "ok"),
    ("I think the correct option is (B) blue.", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    (r"\boxed{\text{(B)}}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    (r"\boxed{\text{B}}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    (r"\boxed{Option B}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    ("**B**", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    (r"\boxed{B: blue}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    (r"\boxed{B. blue}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    # option text
    ("the answer is blue", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    (r"\boxed{Blue}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    ("green", "B", "multiple_choice", COLORS, None, None, False, "ok"),
    # several letters: ambiguous and wrong, never a guess
    (r"\boxed{A or C}", "A", "multiple_choice", COLORS, None, None, False, "ambiguous"),
    ("The answer is A and B", "A", "multiple_choice", COLORS, None, None, False, "ambiguous"),
    (r"\boxed{B, C}", "B", "multiple_choice", COLORS, None, None, False, "ambiguous"),
    # a letter beyond the options is wrong
    (r"\boxed{D}", "B", "multiple_choice", COLORS, None, None, False, "ok"),
    # units, percent, thousands separators, money
    (r"\boxed{12 cm}", "12", "integer", [], None, "cm", True, "ok"),
    (r"\boxed{12 \text{ cm}}", "12", "integer", [], None, "cm", True, "ok"),
    (r"\boxed{13 cm}", "12", "integer", [], None, "cm", False, "ok"),
    (r"\boxed{45°}", "45", "integer", [], None, None, True, "ok"),
    (r"\boxed{45^\circ}", "45", "integer", [], None, None, True, "ok"),
    (r"\boxed{45^{\circ}}", "45", "integer", [], None, None, True, "ok"),
    (r"\boxed{25\%}", "25", "integer", [], None, None, True, "ok"),
    (r"\boxed{12.5%}", "12.5", "float", [], 1, None, True, "ok"),
    (r"\boxed{1,234}", "1234", "integer", [], None, None, True, "ok"),
    (r"\boxed{1,234,567.5}", "1234567.5", "float", [], 1, None, True, "ok"),
    (r"\boxed{\$1,200}", "1200", "integer", [], None, None, True, "ok"),
    (r"\boxed{x = 5}", "5", "integer", [], None, None, True, "ok"),
    (r"\boxed{1.2 \times 10^{3}}", "1200", "integer", [], None, None, True, "ok"),
    (r"\boxed{6 \text{ units}}", "6", "integer", [], None, None, True, "ok"),
    # "Answer:" style patterns
    ("Answer: 7", "7", "integer", [], None, None, True, "ok"),
    ("Final answer: **42**", "42", "integer", [], None, None, True, "ok"),
    ("So the final answer is 5, which is odd.", "5", "integer", [], None, None, True, "ok"),
    ("<answer>9</answer>", "9", "integer", [], None, None, True, "ok"),
    ("7", "7", "integer", [], None, None, True, "ok"),
    # only the text after the last </think> counts
    (r"<think>maybe \boxed{3}?</think> So the answer is \boxed{5}.", "5", "integer", [], None, None, True, "ok"),
    (r"<think>it is \boxed{5}</think> So the answer is \boxed{3}.", "5", "integer", [], None, None, False, "ok"),
    (r"<think>(A) looks wrong, (C) too</think> \boxed{B}", "B", "multiple_choice", COLORS, None, None, True, "ok"),
    # no answer
    (r"<think>I think it is \boxed{5} but let me check", "5", "integer", [], None, None, False, "no_answer"),
    ("", "5", "integer", [], None, None, False, "no_answer"),
    ("<think>a</think>", "5", "integer", [], None, None, False, "no_answer"),
    (
        "Let me count the objects in the picture carefully one by one.\nThere are many of them here.",
        "5",
        "integer",
        [],
        None,
        None,
        False,
        "no_answer",
    ),
    # float precision (MathVista style)
    (r"\boxed{1.50}", "1.5", "float", [], 1, None, True, "ok"),
    (r"\boxed{1.54}", "1.5", "float", [], 1, None, True, "ok"),
    (r"\boxed{1.56}", "1.5", "float", [], 1, None, False, "ok"),
    (r"\boxed{3.14159}", "3.14", "float", [], 2, None, True, "ok"),
    (r"\boxed{0.3333333}", "0.333333", "float", [], None, None, True, "ok"),
    (r"\boxed{0.34}", "0.333333", "float", [], None, None, False, "ok"),
    # integer gold, decimal prediction
    (r"\boxed{3.0}", "3", "integer", [], None, None, True, "ok"),
    (r"\boxed{3.5}", "3", "integer", [], None, None, False, "ok"),
    (r"\boxed{three}", "3", "integer", [], None, None, True, "ok"),
    # text answers
    (r"\boxed{\text{Yes}}", "yes", "text", [], None, None, True, "ok"),
    (r"\boxed{No}", "yes", "text", [], None, None, False, "ok"),
    ("The answer is New York.", "new york", "text", [], None, None, True, "ok"),
]


@pytest.mark.parametrize("response,gold,atype,options,precision,unit,correct,status", CASES)
def test_grade_table(response, gold, atype, options, precision, unit, correct, status):
    g = grade(response, gold, atype, options, precision=precision, unit=unit)
    assert (g.correct, g.status) == (correct, status), g


def test_extract_answer():
    assert extract_answer(r"<think>x</think> so \boxed{\frac{1}{2}}") == (r"\frac{1}{2}", "ok")
    assert extract_answer(r"\boxed{\text{(B)}}") == (r"\text{(B)}", "ok")
    assert extract_answer(r"\boxed{\{1, 2\}}") == (r"\{1, 2\}", "ok")
    assert extract_answer(r"first \boxed{1} then \boxed{2}") == ("2", "ok")
    assert extract_answer("<think>unfinished") == (None, "no_answer")
    assert extract_answer("") == (None, "no_answer")
    assert extract_answer("The answer is $42$.") == ("42", "ok")
    assert extract_answer("Looking at it, (B) fits best.", COLORS) == ("B", "ok")
    assert extract_answer("Option A is close but Option C fits.", COLORS) == (None, "ambiguous")
    assert extract_answer("Blue.", COLORS) == ("blue", "ok")  # the matched option text


@pytest.mark.parametrize(
    "response,ok",
    [
        (r"<think>reasoning</think> The answer is \boxed{5}.", True),
        (r"  <think>a</think>\boxed{\frac{1}{2}}", True),
        (r"<think>reasoning</think> The answer is 5.", False),  # missing boxed
        (r"The answer is \boxed{5}.", False),  # missing think
        (r"<think>a</think><think>b</think>\boxed{5}", False),  # two think blocks
        (r"<think>a</think>\boxed{}", False),  # empty boxed
        (r"<think>a</think>\boxed{ }", False),  # blank boxed
        (r"<think> </think>\boxed{5}", False),  # empty think
        (r"<think>a \boxed{5}</think> done", False),  # boxed only inside think
        (r"</think>a<think>\boxed{5}", False),  # wrong order
        (r"<think>a</think>\boxed{5", False),  # unclosed box
    ],
)
def test_check_format(response, ok):
    assert check_format(response) is ok
    assert grade(response, "5", "integer").format_ok is ok


def test_reward():
    assert reward(Grade("5", True, True, "ok")) == pytest.approx(1.0)
    assert reward(Grade("5", True, False, "ok")) == pytest.approx(0.9)
    assert reward(Grade("4", False, True, "ok")) == pytest.approx(0.1)
    assert reward(Grade(None, False, False, "no_answer")) == 0.0
    assert reward(Grade("5", True, True, "ok"), accuracy_weight=1.0, format_weight=0.0) == 1.0


def test_grade_row_and_grade_many():
    row = {"answer": "B", "answer_type": "multiple_choice", "options": COLORS, "precision": None, "unit": None}
    with Grader() as grader:
        assert grade_row(grader, r"<think>x</think>\boxed{B}", row) == Grade("B", True, True, "ok")
        float_row = {"answer": "1.5", "answer_type": "float", "options": [], "precision": 1.0, "unit": ""}
        assert grade_row(grader, r"\boxed{1.54}", float_row).correct
        items = [
            {"response": rf"\boxed{{{i % 7}}}", "answer": "3", "answer_type": "integer", "options": [], "precision": None, "unit": None}
            for i in range(50)
        ]
        grades = grader.grade_many(items)
        assert [g.correct for g in grades] == [i % 7 == 3 for i in range(50)]
        assert grader.stats["graded"] == 52
        assert grader.stats["verifier_calls"] == 0  # fast paths never touch the child
    assert grade_row(None, r"\boxed{A}", row).correct is False


def test_unknown_answer_type_raises():
    with pytest.raises(ValueError):
        grade("5", "5", "number")


# --------------------------------------------------------------------------------------------
# Fuzz: grading never raises and respects the time limit
# --------------------------------------------------------------------------------------------

TOKENS = [
    "\\boxed{", "}", "{", "\\frac", "\\dfrac", "</think>", "<think>", "^", "\\sqrt", "\\text{", "\\fbox{",
    "0", "1", "2", "7", "9", ".", ",", "/", "-", "+", "=", "x", "y", "A", "B", "C", "(", ")", "$", "**",
    " ", "\n", "answer is ", "Answer: ", "%", "°", "cm", "\\", "\\left(", "\\right)", "\\times", "10^",
    "e", "\\pi", "\\infty", "\\{", "\\}", "[", "]", "<answer>", "</answer>", "Option ", "blue",
]
FUZZ_TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)), max_size=40).map("".join),
)
FUZZ_TIMEOUT = 3.0
GOLDS = {
    "multiple_choice": ("B", COLORS, None, None),
    "integer": ("12", [], None, "cm"),
    "float": ("1.5", [], 1, None),
    "text": ("blue", [], None, None),
    "expression": ("x^2+1", [], None, None),
}


@pytest.fixture(scope="module")
def fuzz_grader():
    with Grader(timeout_s=FUZZ_TIMEOUT) as g:
        g.grade(r"\boxed{x^2+1}", "x^2+1+0", "expression")  # start the child outside the timed calls
        yield g


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=FUZZ_TEXT)
def test_fuzz_never_raises(fuzz_grader, text):
    for atype in ANSWER_TYPES:
        gold, options, precision, unit = GOLDS[atype]
        t0 = time.monotonic()
        g = fuzz_grader.grade(text, gold, atype, options, precision, unit)
        elapsed = time.monotonic() - t0
        assert isinstance(g, Grade)
        assert g.status in STATUSES
        assert isinstance(g.correct, bool) and isinstance(g.format_ok, bool)
        assert g.extracted is None or isinstance(g.extracted, str)
        assert elapsed < FUZZ_TIMEOUT + 2.0, (text, atype, elapsed)
    extracted, status = extract_answer(text, COLORS)
    assert status in STATUSES


# --------------------------------------------------------------------------------------------
# Time limit, threads, processes
# --------------------------------------------------------------------------------------------

HARD = r"\boxed{(x+1)^{100000}}"  # sympy needs minutes to compare this with x^{100000}


def test_timeout_kills_and_restarts_worker():
    limit = 1.5
    with Grader(timeout_s=limit) as grader:
        assert grader.grade(r"\boxed{x^2}", "x^{2}+0", "expression").correct  # warm the child
        t0 = time.monotonic()
        g = grader.grade(HARD, "x^{100000}", "expression")
        elapsed = time.monotonic() - t0
        assert g.status == "timeout" and g.correct is False
        assert g.extracted == "(x+1)^{100000}"
        assert elapsed < limit + 1.0
        assert grader.stats["timeouts"] == 1
        # the worker was killed; the next call starts a new one and works
        g2 = grader.grade(r"\boxed{\sqrt{2}}", "2^{1/2}", "expression")
        assert (g2.correct, g2.status) == (True, "ok")
        assert grader.stats["worker_starts"] == 2
    # the module-level grade() honours its own timeout_s argument
    t0 = time.monotonic()
    assert grade(HARD, "x^{100000}", "expression", timeout_s=limit).status == "timeout"
    assert time.monotonic() - t0 < limit + 3.0  # may include the module grader's first start
    assert grade(r"\boxed{2x}", "x+x", "expression").correct


PARALLEL_ITEMS = [
    (r"<think>a</think>\boxed{\frac{1}{2}}", "0.5", "float", [], None, None),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", "expression", [], None, None),
    (r"\boxed{x^2+1}", "(x+1)^2", "expression", [], None, None),
    (r"\boxed{\sqrt{16}}", "4", "integer", [], None, None),
    (r"\boxed{A or C}", "A", "multiple_choice", COLORS, None, None),
    ("the answer is blue", "B", "multiple_choice", COLORS, None, None),
    (r"\boxed{12 cm}", "12", "integer", [], None, "cm"),
    (r"\boxed{\pi}", r"\pi", "expression", [], None, None),
    (r"\boxed{2\pi r}", r"2 r \pi", "expression", [], None, None),
    ("", "5", "integer", [], None, None),
] * 2


def _grade_args(args):
    return grade(*args)


def test_threads_and_processes_match_main_thread():
    expected = [grade(*args) for args in PARALLEL_ITEMS]
    assert [g.correct for g in expected[:10]] == [True, True, False, True, False, True, True, True, True, False]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(_grade_args, PARALLEL_ITEMS))
    assert threaded == expected
    with Grader() as shared, ThreadPoolExecutor(max_workers=4) as pool:
        shared_results = list(pool.map(lambda a: shared.grade(*a), PARALLEL_ITEMS))
    assert shared_results == expected
    # daemonic pool workers (fork inherits the module grader and its live child: must start its own)
    with multiprocessing.Pool(2) as pool:
        in_workers = pool.map(_grade_args, PARALLEL_ITEMS)
    assert in_workers == expected
    assert grade(*PARALLEL_ITEMS[1]) == expected[1]  # the parent's worker is still usable


def test_module_grader_is_shared():
    assert grading._global_grader() is grading._global_grader()
