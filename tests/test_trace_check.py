"""synergy.data.trace_check: statements of a trace checked against the scene the question was drawn from."""

import random

from synergy.data.synthetic import make_question
from synergy.data.trace_check import SceneFacts, check_steps
from synergy.data.traces import make_response


def test_gold_traces_are_all_true_and_a_changed_fact_is_caught():
    rng = random.Random(0)
    for template in ("sum_colours", "count_shape", "bar_total", "colour_at", "points"):
        q = make_question(template, rng, max_objects=6)
        scene = SceneFacts.parse(q.scene.key())
        trace = make_response(q, "reflective", False, rng)
        found, true = check_steps(trace, scene)
        assert found >= 1 and true == found, (template, trace)
    q = make_question("bar_height", rng)
    colour, h = q.scene.bars[0]
    wrong = f"The {colour} bar has height {h % 4 + 1}. A picture of a {colour} bar of height {h}."
    assert check_steps(wrong, SceneFacts.parse(q.scene.key())) == (2, 1)


def test_scene_keys_parse():
    s = SceneFacts.parse("shapes:12rc,34bt")
    assert s.objects == {(1, 2, "red", "circle"), (3, 4, "blue", "triangle")}
    assert SceneFacts.parse("bars:red3,blue1,green4,yellow2").bars == {"red": 3, "blue": 1, "green": 4, "yellow": 2}
    assert check_steps("There are 2 red shapes. There is 1 circle.", s) == (2, 1)


def test_counts_view_traces_state_group_counts_that_are_true():
    rng = random.Random(3)
    for template in ("sum_colours", "count_colour", "points", "difference", "count_all"):
        q = make_question(template, rng, max_objects=6)
        trace = make_response(q, "reflective_short", False, rng, scene_view="counts")
        assert "row " not in trace.split("</think>")[0] or template == "colour_at"     # no object-by-cell listing
        found, true = check_steps(trace, SceneFacts.parse(q.scene.key()))
        assert found >= 7 and true == found, trace                               # 4 colours + 3 shapes at least
        assert trace.rstrip().endswith(f"\\boxed{{{q.answer}}}")
