"""The routed arm (synergy/routing.py, docs/routing.md): the signal, the routing, its cost, its config and its rule."""
import math

import polars as pl
import pytest
import yaml

from synergy.config import ConfigError, load_config
from synergy.routing import agreement, choose_threshold, route, sweep


def _evals(arm: str, answers: dict[str, list[str | None]], gold: dict[str, str], tokens: int) -> pl.DataFrame:
    rows = [{"bench": "b", "id": q, "sample": k, "response": f"{arm} {a}", "num_tokens": tokens, "truncated": False,
             "extracted": a, "correct": a == gold[q], "format_ok": a is not None, "status": "ok", "arm": arm}
            for q, xs in answers.items() for k, a in enumerate(xs)]
    return pl.DataFrame(rows)


GOLD = {"q1": "3", "q2": "5", "q3": "7"}
FAST = _evals("rl", {"q1": ["3", "3", "3", "3"], "q2": ["4", "5", "4", "6"], "q3": [None, None, None, None]}, GOLD, 10)
SLOW = _evals("sft", {"q1": ["2", "2", "3", "2"], "q2": ["5", "5", "5", "5"], "q3": ["7", "7", "1", "7"]}, GOLD, 100)


def test_agreement_is_the_share_of_the_most_common_answer_and_no_answer_agrees_with_nothing():
    assert agreement(["3", "3", "3", "3"]) == 1.0
    assert agreement(["4", "5", "4", "6"]) == 0.5
    assert agreement([None, None, None, None]) == 0.0
    assert agreement(["1", None, None, "1"]) == 0.5


def test_route_answers_each_question_with_one_arm_and_records_why_and_the_cost():
    out = route(FAST, SLOW, arm="routed", threshold=1.0, names=("rl", "sft"))
    assert out.height == FAST.height and set(out["arm"]) == {"routed"}
    per_q = {r["id"]: r for r in out.group_by("id").agg(pl.col("routed_to").first(), pl.col("agreement").first(),
                                                        pl.col("routing_tokens").first(), pl.col("correct").mean())
             .iter_rows(named=True)}
    assert per_q["q1"]["routed_to"] == "rl" and per_q["q1"]["routing_tokens"] == 40          # rl's samples only
    assert per_q["q2"]["routed_to"] == "sft" and per_q["q2"]["routing_tokens"] == 40 + 400   # both arms generated
    assert per_q["q2"]["agreement"] == 0.5 and per_q["q2"]["correct"] == 1.0
    assert per_q["q3"]["routed_to"] == "sft" and per_q["q3"]["correct"] == 0.75
    # rows keep the chosen arm's responses, in the fast arm's question order
    assert out.filter(pl.col("id") == "q2")["response"].to_list() == ["sft 5"] * 4
    assert out["id"].to_list() == FAST["id"].to_list()


def test_the_threshold_trades_accuracy_for_tokens():
    s = sweep(FAST, SLOW, [0.0, 0.5, 1.0], names=("rl", "sft"))
    assert s["share_to_slow"].to_list() == pytest.approx([0, 1 / 3, 2 / 3])   # threshold 0: always the fast arm
    assert s["tokens_per_question"].is_sorted()
    assert s["accuracy"].to_list()[-1] == pytest.approx(100 * (1 + 1 + 0.75) / 3)


def test_different_questions_are_refused_naming_them():
    with pytest.raises(ValueError, match="evaluated different questions"):
        route(FAST, SLOW.filter(pl.col("id") != "q3"), arm="routed", threshold=1.0)
    with pytest.raises(ValueError, match="threshold must be in"):
        route(FAST, SLOW, arm="routed", threshold=1.5)


def _config() -> dict:
    return yaml.safe_load(open("config/config.yaml"))


@pytest.mark.parametrize("change, message", [
    ({"fast": None}, "missing required config key 'arms\\[.*\\].fast'"),
    ({"slow": "nope"}, "'nope' is not an arm"),
    ({"slow": "rl"}, "two different arms"),
    ({"train_set": "eureka"}, "a routed arm trains nothing"),
    ({"settings": {"threshold": 2}}, "threshold"),
    ({"settings": {"signal": "logprob"}}, "signal"),
    ({"settings": {"tune_set": "nope"}}, "'nope' is not a train set of this study"),
    ({"settings": {"tune_set": "rl"}}, "arm 'rl', which the routed arm builds on, trains on 'rl'"),
    ({"slow": "twostage", "settings": {"tune_set": "eureka"}}, "arm 'sft-eureka', which the routed arm builds on"),
    ({"settings": {"candidates": []}}, "candidates"),
])
def test_config_refuses_a_bad_routed_arm(change, message):
    cfg = _config()
    arm = next(a for a in cfg["arms"] if a["kind"] == "routed")
    arm.update(change)
    if arm.get("fast") is None:
        del arm["fast"]
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_a_routed_arm_of_a_routed_arm_is_refused():
    cfg = _config()
    cfg["arms"].append({"name": "routed2", "kind": "routed", "fast": "routed", "slow": "rl"})
    with pytest.raises(ConfigError, match="itself a routed arm"):
        load_config(cfg)


def test_the_default_study_routes_rl_and_sft_and_shows_the_arm_in_table6_and_fig1():
    study = load_config(_config())
    arm = study.arm("routed")
    assert (arm.fast, arm.slow) == ("rl", "sft-eureka")
    assert study.arm_settings("routed").tune_set == "route-tune"
    assert "routed" in study.tables["table6_synergy"]
    from synergy.workflow import model_arms, routed_inputs, tokenizer_corpus_paths, tune_samples
    assert "routed" not in model_arms(study) and "rl" in model_arms(study)
    assert routed_inputs(study, "routed", "synth-count") == {
        "fast": "results/embedded/eval/rl/synth-count.parquet",
        "slow": "results/embedded/eval/sft-eureka/synth-count.parquet",
        "tune_fast": "results/embedded/routing/tune/rl/route-tune.parquet",
        "tune_slow": "results/embedded/routing/tune/sft-eureka/route-tune.parquet"}
    assert tune_samples(study) == {"route-tune": {"rl", "sft-eureka"}}
    # held out from every model: not even the tiny tokenizer reads it
    assert not any("route-tune" in p for p in tokenizer_corpus_paths(study))


def test_the_threshold_is_chosen_on_the_tune_set_best_accuracy_then_fewest_tokens():
    # on these held-out questions routing everything to the slow arm is best: threshold above every agreement
    t, table = choose_threshold(FAST, SLOW, [0.0, 0.5, 1.0], names=("rl", "sft"))
    assert t == 1.0 and table.filter(pl.col("chosen"))["threshold"].to_list() == [1.0]
    assert table["accuracy"].to_list() == sweep(FAST, SLOW, [0.0, 0.5, 1.0], names=("rl", "sft"))["accuracy"].to_list()
    # equal accuracy: the cheaper threshold wins (here the fast arm is right everywhere it is asked)
    same = _evals("sft", {"q1": ["3"] * 4, "q2": ["4", "5", "4", "6"], "q3": [None] * 4}, GOLD, 100)
    t, table = choose_threshold(FAST, same, [0.0, 0.5, 1.0], names=("rl", "sft"))
    assert t == 0.0 and table.filter(pl.col("chosen")).height == 1


def test_the_sweep_table_shows_the_tune_set_where_the_threshold_is_chosen_and_the_benchmarks():
    from synergy.routing import sweep_table

    params = {"fast": "rl", "slow": "sft", "threshold": 1.0, "tune_set": "t", "candidates": (0.0, 0.5, 1.0)}
    table = sweep_table("routed", params, (FAST, SLOW), (FAST, SLOW))
    assert table["split"].unique(maintain_order=True).to_list() == ["tune set t", "benchmarks"]
    chosen = table.filter(pl.col("chosen"))
    assert chosen["threshold"].to_list() == [1.0, 1.0]  # chosen on the tune set, used on the benchmarks
    fixed = sweep_table("routed", {**params, "tune_set": None, "threshold": 0.75}, (FAST, SLOW), None)
    assert set(fixed["split"]) == {"benchmarks"} and fixed.filter(pl.col("chosen"))["threshold"].to_list() == [0.75]
    assert fixed["threshold"].to_list() == [0.0, 0.5, 0.75, 1.0]


def _scores(per_sample: dict[str, list[float | None]]) -> pl.DataFrame:
    return pl.DataFrame([{"bench": "b", "id": q, "sample": k, "mean_logprob": lp, "tokens": 5}
                         for q, xs in per_sample.items() for k, lp in enumerate(xs)],
                        schema={"bench": pl.String, "id": pl.String, "sample": pl.Int32, "mean_logprob": pl.Float64,
                                "tokens": pl.Int32})


# confidence disagrees with agreement on purpose: q1 (agreement 1) is unsure, q3 (no answers) is sure
SCORES = _scores({"q1": [math.log(0.2)] * 4, "q2": [math.log(0.9)] * 2 + [math.log(0.5), None],
                  "q3": [math.log(0.8)] * 4})


def test_confidence_is_the_mean_geometric_token_probability_and_an_empty_response_counts_zero():
    from synergy.routing import confidence

    per_q = dict(confidence(SCORES).select("id", "confidence").iter_rows())
    assert per_q["q1"] == pytest.approx(0.2) and per_q["q3"] == pytest.approx(0.8)
    assert per_q["q2"] == pytest.approx((0.9 + 0.9 + 0.5 + 0.0) / 4)


def test_routing_by_confidence_lets_the_signal_decide_not_agreement():
    out = route(FAST, SLOW, arm="routed", threshold=0.5, signal="confidence", scores=SCORES, names=("rl", "sft"))
    per_q = {r["id"]: r for r in out.group_by("id").agg(pl.col("routed_to").first(), pl.col("confidence").first(),
                                                        pl.col("agreement").first()).iter_rows(named=True)}
    assert per_q["q1"]["routed_to"] == "sft" and per_q["q1"]["agreement"] == 1.0   # agreement would keep rl
    assert per_q["q2"]["routed_to"] == "rl" and per_q["q2"]["confidence"] == pytest.approx(0.575)  # >= 0.5
    assert per_q["q3"]["routed_to"] == "rl" and per_q["q3"]["agreement"] == 0.0  # agreement would send it to sft
    # threshold semantics: the fast arm answers when confidence >= threshold (an equal value stays with it)
    at = route(FAST, SLOW, arm="r", threshold=0.8, signal="confidence", scores=SCORES, names=("rl", "sft"))
    assert dict(at.group_by("id").agg(pl.col("routed_to").first()).iter_rows())["q3"] == "rl"
    above = route(FAST, SLOW, arm="r", threshold=0.81, signal="confidence", scores=SCORES, names=("rl", "sft"))
    assert set(above["routed_to"]) == {"sft"}
    assert set(route(FAST, SLOW, arm="r", threshold=0.0, signal="confidence", scores=SCORES)["routed_to"]) == {"fast"}
    # agreement rows do not grow a confidence column
    assert "confidence" not in route(FAST, SLOW, arm="r", threshold=1.0).columns


def test_per_question_confidence_and_the_sweep_and_choice_use_it():
    per_q = pl.DataFrame({"bench": ["b"] * 3, "id": ["q1", "q2", "q3"], "confidence": [0.2, 0.575, 0.8]})
    a = route(FAST, SLOW, arm="r", threshold=0.5, signal="confidence", scores=per_q)
    b = route(FAST, SLOW, arm="r", threshold=0.5, signal="confidence", scores=SCORES)
    assert a["routed_to"].to_list() == b["routed_to"].to_list()
    s = sweep(FAST, SLOW, [0.0, 0.5, 0.7, 1.0], names=("rl", "sft"), signal="confidence", scores=SCORES)
    assert s["share_to_slow"].to_list() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    # rl is sure of q3 but has no answer there: only threshold 1 (everything to sft) is right on all three
    t, table = choose_threshold(FAST, SLOW, [0.0, 0.5, 0.7, 1.0], names=("rl", "sft"), signal="confidence",
                                scores=SCORES)
    assert t == 1.0 and table.filter(pl.col("chosen"))["threshold"].to_list() == [1.0]


def test_confidence_routing_needs_scores_for_every_sample():
    with pytest.raises(ValueError, match="needs the fast arm's scores"):
        route(FAST, SLOW, arm="r", threshold=0.5, signal="confidence")
    with pytest.raises(ValueError, match="have no confidence score"):
        route(FAST, SLOW, arm="r", threshold=0.5, signal="confidence", scores=SCORES.filter(pl.col("id") != "q2"))
    with pytest.raises(ValueError, match="unknown routing signal"):
        route(FAST, SLOW, arm="r", threshold=0.5, signal="entropy")


def test_a_routed_arm_on_confidence_reads_its_fast_arms_scores():
    cfg = _config()
    cfg["arms"].append({"name": "routed-conf", "kind": "routed", "fast": "rl", "slow": "sft-eureka",
                        "settings": {"signal": "confidence", "tune_set": "route-tune"}})
    study = load_config(cfg)
    from synergy.workflow import confidence_scored, routed_inputs, routing_files
    assert routed_inputs(study, "routed-conf", "synth-count")["scores"] == \
        "results/embedded/routing/confidence/rl/synth-count.parquet"
    assert routed_inputs(study, "routed-conf", "synth-count")["tune_scores"] == \
        "results/embedded/routing/confidence/rl/tune/route-tune.parquet"
    assert "scores" not in routed_inputs(study, "routed", "synth-count")
    assert confidence_scored(study) == {"rl": {"route-tune"}}
    assert len(routing_files(study)["routed-conf"]["scores"]) == len(study.bench_names)
    # its cost counts the fast arm's scoring passes, one per benchmark and one on the tune set; the agreement arm's not
    from synergy.workflow.cost import upstream_jobs
    rules = [j[0] for j in upstream_jobs(study, "routed-conf")]
    assert rules.count("score_confidence") == len(study.bench_names) and rules.count("score_confidence_tune") == 1
    assert not any(r.startswith("score_confidence") for r, _ in upstream_jobs(study, "routed"))
