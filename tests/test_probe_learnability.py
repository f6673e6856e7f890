"""benchmarks/probe_learnability.py: its questions are right, and a one-token function is learned within 100 steps."""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import probe_learnability as pl  # noqa: E402


def test_questions_answer_right_and_equality_tasks_match_about_half_the_time():
    rng = random.Random(0)
    for task in pl.TASKS:
        qs = [pl.question(task, rng) for _ in range(400)]
        for q, a, cands in qs:
            assert a in cands
            if task == "colour":
                named = [w.strip(".?") for w in q.split() if w.strip(".?") in pl.COLOURS]
                assert (a == "yes") == (named[0] == named[1]), q
            if task == "pair":
                words = [w.strip(".?") for w in q.split()]
                pairs = [(words[i], words[i + 1]) for i in range(len(words) - 1) if words[i] in pl.COLOURS]
                assert (a == "yes") == (pairs[0] == pairs[1]), q
        if task in ("colour", "pair"):
            share = sum(a == "yes" for _, a, _ in qs) / len(qs)
            assert 0.45 < share < 0.7, (task, share)


def test_a_function_of_one_prompt_token_is_learned():
    first, final, curve = pl.run("warm", 0.02, steps=100)
    assert first is not None and first <= 100 and final >= 0.95, curve
