"""Experiments on a model key through the pipeline: control messages, routing, verdicts and
the forgetting guard."""

from __future__ import annotations

import random

import orjson
import pytest

from stream_cd.config import PipelineConfig
from stream_cd.pipeline import Pipeline

NOISY = "tests.stream_cd.user_models:region_memory_noisy"
EXACT = "tests.stream_cd.user_models:region_memory_exact"


def segment(rng: random.Random, n: int, regions: range, label, start: int) -> list[dict]:
    out = []
    for i in range(n):
        r = rng.choice(regions)
        out.append({"key": "k", "id": f"e{start + i}", "ts": 1_000 * (start + i), "x": {"r": r}, "y": label(r)})
    return out


def run(config: PipelineConfig, events: list[dict], record: bool = False) -> tuple[Pipeline, list, list]:
    p = Pipeline(config, record_predictions=record)
    decisions, served = [], []
    for offset, event in enumerate(events):
        outcome = p.process(orjson.dumps(event), ts=0, offset=offset)
        assert outcome.invalid is None, outcome.invalid
        decisions += outcome.decisions
        if outcome.served is not None:
            served.append(outcome.served)
    return p, decisions, served


def start(name: str, spec: str, **extra) -> dict:
    return {"key": "k", "control": "start", "experiment": {"name": name, "kind": "ab", "unit": "request",
                                                            "arms": [{"name": "fresh", "spec": spec}], **extra}}


def recurring_stream(seed: int = 1) -> list[dict]:
    """Concept A (regions 0-9), then B (regions 10-19) with an A/B test of a fresh model started
    where B begins, then A again."""
    rng = random.Random(seed)
    a = segment(rng, 6_000, range(10), lambda r: r % 2 == 0, 0)
    b = segment(rng, 6_000, range(10, 20), lambda r: r % 3 == 0, 6_000)
    again = segment(rng, 2_000, range(10), lambda r: r % 2 == 0, 12_000)
    return a + [start("fresh-on-b", EXACT)] + b + again


def config(forgetting: str) -> PipelineConfig:
    return PipelineConfig(model=NOISY, drift="none", forgetting=forgetting, task="classification")


def test_an_ab_winner_that_forgot_a_recurring_pattern_is_held_back_under_block() -> None:
    p, decisions, _ = run(config("block"), recurring_stream())
    actions = [(d.action, d.trigger) for d in decisions if d.action != "checkpoint"]
    assert actions[0] == ("start", "experiment") and ("hold", "forgetting") in actions
    hold = next(d for d in decisions if d.action == "hold")
    guard = hold.evidence["forgetting"]
    assert guard["forgot"] and guard["mode"] == "block" and guard["p_value"] < 0.01
    assert guard["candidate_loss"] > guard["champion_loss"] + 0.2  # it guesses on concept A
    assert hold.arm == "fresh" and hold.experiment == "fresh-on-b" and hold.evidence["winner"] == "fresh"
    key = p.model("k")
    assert key.champion.spec.name == NOISY and key.running is None  # the champion still serves
    assert key.summary()["holds"] == 1 and key.summary()["promotions"] == 0
    # and when A comes back, the champion (which kept A) serves it well
    assert key.summary()["experiment"]["state"].startswith("held")


def test_warn_lets_it_through_with_the_evidence() -> None:
    p, decisions, _ = run(config("warn"), recurring_stream())
    promote = next(d for d in decisions if d.action == "promote")
    assert (promote.trigger, promote.arm, promote.experiment) == ("experiment", "fresh", "fresh-on-b")
    assert promote.evidence["forgetting"]["forgot"] and promote.evidence["forgetting"]["mode"] == "warn"
    assert promote.evidence["arms"]["fresh"]["verdict"] == "better"
    key = p.model("k")
    assert key.champion.spec.name == EXACT and key.summary()["promotions"] == 1
    # the old champion stayed on as the shadow, until its own test showed it worse
    assert [(d.action, d.challenger_version) for d in decisions if d.trigger == "comparator"] == [("drop", "v1.0")]


def test_on_a_lasting_change_warn_promotes_the_retrain() -> None:
    rng = random.Random(2)
    before = segment(rng, 6_000, range(10), lambda r: r % 2 == 0, 0)
    after = segment(rng, 6_000, range(10), lambda r: r % 2 == 1, 6_000)  # the same regions, the labels flipped for good
    _, decisions, _ = run(config("warn"), before + [start("after-change", EXACT)] + after)
    promote = next(d for d in decisions if d.action == "promote")
    assert promote.evidence["forgetting"]["forgot"]  # it is worse on the old concept, which is gone
    arms = promote.evidence["arms"]
    assert arms["fresh"]["metric"] > arms["control"]["metric"] + 0.2


def test_each_request_is_served_by_its_units_arm_and_the_predictions_say_which() -> None:
    rng = random.Random(3)
    events = segment(rng, 500, range(10), lambda r: r % 2 == 0, 0)
    events.append({**start("ab-1", EXACT), "experiment": {**start("ab-1", EXACT)["experiment"], "unit": "user"}})
    for i in range(3_000):
        r = rng.randrange(10)
        events.append({"key": "k", "id": f"q{i}", "ts": 10**6 + i, "user": f"u{i % 300}", "x": {"r": r}, "y": r % 2 == 0})
    p, decisions, served = run(config("off"), events, record=True)
    in_test = [s for s in served if s["experiment"] == "ab-1"]
    users = {e["id"]: e["user"] for e in events if "user" in e}
    by_user: dict[str, set] = {}
    for s in in_test:
        by_user.setdefault(users[s["id"]], set()).add(s["arm"])
    assert by_user and all(len(arms) == 1 for arms in by_user.values())  # one arm per unit
    assert {a for arms in by_user.values() for a in arms} == {"control", "fresh"}
    start_decision = next(d for d in decisions if d.action == "start")
    assert start_decision.evidence["sample_size"]["units"] > start_decision.evidence["sample_size"]["fixed_horizon_units"]
    assert start_decision.traffic == {"control": 0.5, "fresh": 0.5}


@pytest.mark.parametrize("event, reason", [
    ({"control": "start", "experiment": {"name": "x", "kind": "ab", "arms": [{"name": "b", "spec": "no-such-model"}]}},
     "unknown model spec 'no-such-model'"),
    ({"control": "start", "experiment": {"name": "x", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}],
                                          "weights": [1, 2, 3]}}, "3 weights for 2 arms"),
    ({"control": "stop", "experiment": {"name": "nothing"}}, "no experiment 'nothing' is running"),
    ({"control": "start", "experiment": {"name": "x", "kind": "ab", "arms": [{"name": "b", "spec": "linreg"}]}},
     "'linreg' is for regression"),
])
def test_an_invalid_definition_is_refused_whole_with_the_reason(event: dict, reason: str) -> None:
    p = Pipeline(PipelineConfig(model="logreg", drift="none"))
    p.process(b'{"key": "k", "x": {"f": 1.0}, "y": true}', ts=0, offset=0)
    before = p.model("k").book.last_major
    outcome = p.process(orjson.dumps({"key": "k", **event}), ts=0, offset=1)
    assert outcome.invalid is not None and reason in outcome.invalid, outcome.invalid
    assert p.model("k").running is None and p.model("k").book.last_major == before  # nothing applied


def test_a_second_experiment_on_a_key_is_refused_and_stop_ends_the_first() -> None:
    p = Pipeline(PipelineConfig(model="logreg", drift="none"))
    p.process(b'{"key": "k", "x": {"f": 1.0}, "y": true}', ts=0, offset=0)
    first = {"key": "k", "control": "start", "experiment": {"name": "one", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}]}}
    assert p.process(orjson.dumps(first), ts=0, offset=1).decisions[0].action == "start"
    second = {**first, "experiment": {**first["experiment"], "name": "two"}}
    assert "experiment 'one' is running there" in p.process(orjson.dumps(second), ts=0, offset=2).invalid
    stop = p.process(orjson.dumps({"key": "k", "control": "stop", "experiment": {"name": "one"}}), ts=0, offset=3)
    assert [(d.action, d.experiment) for d in stop.decisions] == [("stop", "one")]
    assert p.process(orjson.dumps(second), ts=0, offset=4).decisions[0].experiment == "two"


def test_a_canary_of_a_worse_model_is_rolled_back_through_the_pipeline() -> None:
    rng = random.Random(5)
    events = segment(rng, 2_000, range(10), lambda r: r % 2 == 0, 0)
    events.append({"key": "k", "control": "start", "experiment": {
        "name": "c1", "kind": "canary", "unit": "request", "arms": [{"name": "new", "spec": NOISY}],
        "ramp": [50, 100], "step_min_sample": 200}})
    events += segment(rng, 20_000, range(10), lambda r: r % 2 == 0, 2_000)
    p, decisions, _ = run(PipelineConfig(model=EXACT, drift="none", forgetting="off", task="classification"), events)
    actions = [d.action for d in decisions if d.trigger == "experiment"]
    assert actions == ["start", "rollback"]
    assert p.model("k").champion.spec.name == EXACT and p.model("k").running is None


def test_only_a_units_first_request_is_scored_and_requests_without_a_unit_are_in_no_test() -> None:
    rng = random.Random(4)
    events = segment(rng, 500, range(10), lambda r: r % 2 == 0, 0)
    events.append({**start("ab-u", NOISY), "experiment": {**start("ab-u", NOISY)["experiment"], "unit": "user"}})
    users = set()
    for i in range(3_000):
        r = rng.randrange(10)
        event = {"key": "k", "id": f"q{i}", "ts": 10**6 + i, "x": {"r": r}, "y": r % 2 == 0}
        if i % 4:  # a quarter of the requests come from no known user: they were not randomised
            event["user"] = users_seen = f"u{rng.randrange(300)}"
            users.add(users_seen)
        events.append(event)
    p, decisions, served = run(config("off"), events, record=True)
    test = p.model("k").running.test
    assert len(users) == 300 and test.units == 300 and sum(test.srm.counts) == 300
    assert sum(test.tests["fresh"].counts) == 300  # one reward per user, none of the anonymous requests
    anonymous = {f"q{i}" for i in range(0, 3_000, 4)}
    assert {s["arm"] for s in served if s["id"] in anonymous} == {"control"}


def test_a_shadow_promotion_during_an_experiment_stops_it_its_control_is_gone() -> None:
    rng = random.Random(5)
    events = segment(rng, 300, range(10), lambda r: r % 2 == 0, 0)
    events.append(start("ab-c", NOISY))  # an A/A of the champion's own kind
    events += segment(rng, 6_000, range(10), lambda r: r % 2 == 0, 300)
    cfg = PipelineConfig(model=NOISY, shadow=EXACT, drift="none", forgetting="off", task="classification")
    p, decisions, _ = run(cfg, events)
    actions = [(d.action, d.trigger) for d in decisions if d.action != "checkpoint"]
    promoted = actions.index(("promote", "comparator"))
    assert actions[0] == ("start", "experiment") and actions[promoted + 1] == ("stop", "experiment")
    stop = decisions[[d.action for d in decisions].index("stop")]
    assert "control, was replaced" in stop.evidence["reason"] and stop.experiment == "ab-c"
    assert p.model("k").running is None and "control was replaced" in p.model("k").last_experiment["state"]


def test_a_verdict_on_the_event_whose_shadow_promotion_stopped_the_experiment_is_dropped() -> None:
    """Both tests decide on one event: the shadow's promotion stops the experiment, and the
    experiment's own verdict, queued on that event, has no experiment left to act on."""
    from stream_cd.evaluation.paired import Verdict

    cfg = PipelineConfig(model=NOISY, shadow=EXACT, drift="none", forgetting="off", task="classification")
    rng = random.Random(1)
    events = segment(rng, 50, range(10), lambda r: r % 2 == 0, 0) + [start("e", EXACT)]
    p, _, _ = run(cfg, events)
    key = p.model("k")
    key.policy.experiment.update = lambda *_: Verdict("promote", {"forced": True})  # both decide on the next event
    key.running.test.observe = lambda *_: Verdict("promote", {"winner": "fresh"})
    unit = next(f"q{i}" for i in range(100) if key.running.route(f"q{i}") == "control")
    outcome = p.process(orjson.dumps({"key": "k", "id": unit, "ts": 10**6, "x": {"r": 2}, "y": True}), ts=0, offset=51)
    assert outcome.invalid is None
    assert [(d.action, d.trigger) for d in outcome.decisions] == [("promote", "comparator"), ("stop", "experiment")]
    assert key.running is None and key.champion.spec.name == EXACT
