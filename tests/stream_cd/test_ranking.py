"""Ranking keys through the pipeline (issue 16): ranking requests and clicks in the decoder, a
ranker that learns from clicks, interleaving experiments that promote the better ranker through
the policy (and the forgetting guard) or keep the champion, checkpoints mid-experiment."""

from __future__ import annotations

import pickle
from typing import Any

import orjson
import pytest

from stream_cd.config import PipelineConfig
from stream_cd.errors import InvalidEvent
from stream_cd.events import Clicks, RankingRequest, decode_event
from stream_cd.learning.ranker import ClickThrough
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.ranking import ranking_events

ITEM_ONLY = "tests.stream_cd.user_models:item_only_ranker"


def reason(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    return info.value.reason


REQUEST = {"key": "s", "id": "q1", "x": {"f0": 0.5}, "items": [{"id": "a", "x": {"f0": 1.0}}, {"id": "b", "x": {"f0": -1.0}}]}


@pytest.mark.parametrize(("change", "words"), [
    ({"items": []}, "items is a list (empty); it must be a non-empty list"),
    ({"items": "a,b"}, "items is a string"),
    ({"items": [{"id": "a"}]}, "items[0] is an object without id or x"),
    ({"items": [1]}, "items[0] is a number"),
    ({"items": [{"id": "a", "x": {"f": [1]}}]}, "items[0]: feature 'f' is a list"),
    ({"items": [{"id": True, "x": {}}]}, "items[0]: id is a boolean"),
    ({"items": [{"id": "a", "x": {}}, {"id": "a", "x": {}}]}, "id 'a' comes twice"),
    ({"k": 0}, "k is 0; it must be a whole number of at least 1"),
    ({"k": 2.5}, "k is 2.5"),
    ({"x": {"q": None}}, "feature 'q' is null"),
    ({"y": True}, "a ranking request (items) has no y or clicked"),
])
def test_bad_ranking_requests_are_refused_naming_the_bad_value(change: dict, words: str) -> None:
    assert words in reason(orjson.dumps({**REQUEST, **change}))


@pytest.mark.parametrize(("event", "words"), [
    ({"clicked": ["a"]}, "clicks (clicked) need the id of their ranking request"),
    ({"id": "q1", "clicked": "a"}, "clicked is a string"),
    ({"id": "q1", "clicked": [None]}, "clicked[0] is null"),
    ({"id": "q1", "clicked": ["a", "a"]}, "item 'a' comes twice"),
    ({"id": "q1", "clicked": [], "y": True}, "clicks (clicked) carry no x or y"),
])
def test_bad_clicks_are_refused_naming_the_bad_value(event: dict, words: str) -> None:
    assert words in reason(orjson.dumps(event))


def test_ranking_requests_and_clicks_decode_and_survive_pickling() -> None:
    request = decode_event(orjson.dumps({**REQUEST, "user": "u1", "k": 5}))
    assert type(request) is RankingRequest and request.k == 2 and request.session == "u1" and request.numeric
    clicks = decode_event(b'{"key": "s", "id": "q1", "clicked": []}')
    assert type(clicks) is Clicks and clicks.clicked == ()
    assert pickle.loads(pickle.dumps(request)) == request and pickle.loads(pickle.dumps(clicks)) == clicks


# -- a ranking key through the pipeline ---------------------------------------------------------

def run(pipeline: Pipeline, events: list[Any]) -> list[Any]:
    """Process events (dicts or bytes); return the outcomes."""
    out = []
    for event in events:
        out.append(pipeline.process(event if isinstance(event, bytes) else orjson.dumps(event), ts=0))
    return out


def test_a_ranking_key_refuses_what_it_cannot_use_and_keeps_the_request_waiting() -> None:
    p = Pipeline(PipelineConfig(model="logreg"))
    served = run(p, [REQUEST])[0]
    assert served.invalid is None and sorted(served.prediction) == ["a", "b"]
    refused = run(p, [
        {"key": "s", "id": "r2", "x": {"f0": 1.0}},  # a plain request
        {"key": "s", "x": {"f0": 1.0}, "y": True},  # a labeled event
        {"key": "s", "id": "q1", "y": True},  # a label instead of clicks
        {"key": "s", "id": "q1", "clicked": ["zz"]},  # an item that was not served
        {**REQUEST, "items": [{"id": "a", "x": {"f0": "red"}}]},  # a feature that changed kind
    ])
    reasons = [o.invalid for o in refused]
    assert "this model key ranks: a request needs items" in reasons[0] and "this model key ranks" in reasons[1]
    assert "the feedback of request 'q1' is clicked" in reasons[2]
    assert reasons[3].startswith("clicked item 'zz' was not served for request 'q1' (served: 'a', 'b')")
    assert "feature 'f0' is 'red', a string" in reasons[4]
    key = p.model("s")
    assert key.exposures.stats() == {"pending": 1, "joined": 0, "expired": 0, "rejected": 1}
    joined = run(p, [{"key": "s", "id": "q1", "clicked": ["b"]}, {"key": "s", "id": "q1", "clicked": ["b"]}])
    assert joined[0].invalid is None and "came again" in joined[1].invalid
    summary = p.summary()["models"]["s"]
    assert summary["task"] == "ranking" and summary["ranking"] == {"impressions": 1, "labelled": 2}  # a skipped above b
    # and a plain key refuses rankings and clicks
    run(p, [{"key": "plain", "id": "e1", "x": {"f0": 1.0}, "y": True}])
    plain = run(p, [{**REQUEST, "key": "plain"}, {"key": "plain", "id": "e1", "clicked": []}])
    assert "serves requests without items" in plain[0].invalid and "does not rank" in plain[1].invalid


def stream(model: str, n_users: int, seed: int, experiment: dict | None = None, queries: int = 10,
           **config: Any) -> tuple[Pipeline, list[dict], list[Any]]:
    """A simulated population served by a pipeline with ``model`` (and ``experiment``): the events
    as generated, and the pipeline's decisions."""
    pipeline = Pipeline(PipelineConfig(model=model, drift="none", **config), record_predictions=True)
    decisions: list[Any] = []
    served: dict[str, dict] = {}
    if experiment is not None:
        decisions += pipeline.process(orjson.dumps({"key": "search", "control": "start", "experiment": experiment}),
                                      ts=0).decisions

    def take(event: dict) -> Any:
        outcome = pipeline.process(orjson.dumps(event), ts=event["ts"])
        assert outcome.invalid is None, outcome.invalid
        decisions.extend(outcome.decisions)
        if outcome.served is not None:
            served[event["id"]] = outcome.served
        return outcome.prediction

    events = list(ranking_events(n_users, queries, 500, seed, serve=take, feedback=take, key="search", max_delay=20))
    pipeline.served = served  # type: ignore[attr-defined]
    return pipeline, events, decisions


def test_a_ranker_learns_from_clicks_what_suits_the_query() -> None:
    unranked = ClickThrough()
    for event in ranking_events(300, 10, 500, 5, key="search", max_delay=20):  # served in the order drawn
        if "clicked" in event:
            unranked.update(len(event["clicked"]))
    logreg = stream("logreg", 300, 5)[0]
    item_only = stream(ITEM_ONLY, 300, 5)[0]
    base = unranked.clicks_per_impression
    smart, items = (m.model("search").metric.clicks_per_impression for m in (logreg, item_only))
    print(f"clicks per impression: unranked {base:.3f}, item-only ranker {items:.3f}, logreg ranker {smart:.3f}")
    assert smart > items > base and smart > 1.3 * base and smart > 1.1 * items


IL = {"name": "il-1", "kind": "interleave", "arms": [{"name": "b", "spec": "logreg"}]}


def test_interleaving_promotes_the_better_ranker_through_the_guard() -> None:
    p, _, decisions = stream(ITEM_ONLY, 300, 6, IL)
    actions = [(d.action, d.trigger, d.arm) for d in decisions if d.action != "checkpoint"]
    assert actions == [("start", "experiment", None), ("promote", "experiment", "b")]
    promote = decisions[-1] if decisions[-1].action == "promote" else next(d for d in decisions if d.action == "promote")
    e = promote.evidence
    assert e["winner"] == "b" and e["wins"] > e["losses"] and e["p_value"] <= 0.05
    assert e["wins"] + e["losses"] + e["ties"] + e["no_clicks"] == e["impressions"] < 1000
    assert not e["forgetting"]["forgot"] and e["forgetting"]["test"] == "mcnemar-exact"
    key = p.model("search")
    assert key.champion.spec.name == "logreg" and key.champion_version == "v2.0" and key.running is None
    assert key.summary()["experiment"]["state"] == "promoted" and key.summary()["promotions"] == 1
    records = list(p.served.values())  # type: ignore[attr-defined]
    interleaved = [r for r in records if r["experiment"] == "il-1"]
    # served while it ran: the impressions it judged, and those whose clicks were still on their way (<= 20)
    assert e["impressions"] <= len(interleaved) <= e["impressions"] + 20
    assert all(r["arm"] == "interleaved" for r in interleaved)
    teams = [sum(item["arm"] == "b" for item in r["ranking"]) for r in interleaved]
    assert all(t == 5 for t in teams)  # k = 10 of 20 candidates: five placed by each
    assert all({item["arm"] for item in r["ranking"]} == {"champion"} for r in records if r["experiment"] is None)


def test_interleaving_keeps_a_champion_that_wins() -> None:
    p, _, decisions = stream("logreg", 300, 7, {**IL, "arms": [{"name": "b", "spec": ITEM_ONLY}]})
    stop = next(d for d in decisions if d.action == "stop")
    assert stop.evidence["winner"] == "control" and stop.evidence["reason"] == "the champion is better"
    assert stop.evidence["losses"] > stop.evidence["wins"]
    key = p.model("search")
    assert key.champion.spec.name == "logreg" and key.champion_version == "v1.0" and key.running is None
    assert key.summary()["experiment"]["state"] == "the champion is better" and key.summary()["promotions"] == 0


def test_learn_own_trains_each_ranker_on_the_items_its_team_placed() -> None:
    counts = {}
    for learn in ("all", "own"):
        p, _, _ = stream("logreg", 40, 8, {**IL, "learn": learn, "max_sample": 10**6})
        key = p.model("search")
        counts[learn] = key.champion.learned, key.running.arms["b"].learned, key.ranking.labelled
    (c_all, b_all, labelled_all), (c_own, b_own, labelled_own) = counts["all"], counts["own"]
    assert c_all == b_all == labelled_all  # each learned every labelled item
    assert c_own + b_own == labelled_own and 0.35 < c_own / labelled_own < 0.65


def test_a_ranking_key_checkpointed_mid_experiment_goes_on_the_same() -> None:
    p, events, _ = stream(ITEM_ONLY, 8, 9, {**IL, "max_sample": 10**6})
    key = p.model("search")
    copy = pickle.loads(pickle.dumps(key))
    assert copy.summary() == key.summary() and copy.running.test.status() == key.running.test.status()
    more = list(ranking_events(20, 5, 500, 99, key="search", min_delay=0, max_delay=0))
    for event in more:
        raw = orjson.dumps({**event, "id": f"more-{event['id']}"})
        decoded = decode_event(raw)
        if type(decoded) is RankingRequest:
            a, _ = key.serve(decoded.x, 0, decoded.id, ranking=decoded)
            b, _ = copy.serve(decoded.x, 0, decoded.id, ranking=decoded)
            assert a.served == b.served and a.teams == b.teams
        else:
            assert key.feedback(decoded.id, tuple(c for c in decoded.clicked if c in a.served), 0) == \
                copy.feedback(decoded.id, tuple(c for c in decoded.clicked if c in b.served), 0)
    assert copy.summary() == key.summary()


def test_interleaving_is_for_ranking_keys_and_ab_tests_for_plain_ones() -> None:
    p = Pipeline(PipelineConfig(model="logreg"))
    start = {"control": "start", "experiment": IL}
    run(p, [{"key": "plain", "x": {"f0": 1.0}, "y": True}, {"key": "search", **{k: v for k, v in REQUEST.items() if k != "key"}}])
    refused = run(p, [{"key": "plain", **start}, {"key": "search", "control": "start", "experiment": {
        "name": "ab-1", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}]}}])
    assert all("interleaving compares rankers, on a model key of ranking requests" in o.invalid for o in refused)
    assert p.model("plain").running is None and p.model("search").running is None
    # on a fresh key the experiment makes it a ranking key: a plain request is refused from then on
    fresh = run(p, [{"key": "fresh", **start}, {"key": "fresh", "id": "r1", "x": {"f0": 1.0}}])
    assert fresh[0].invalid is None and [d.action for d in fresh[0].decisions] == ["start"]
    assert "this model key ranks" in fresh[1].invalid
    regression = run(p, [{"key": "numbers", "control": "start", "experiment": {**IL, "arms": [{"name": "b", "spec": "linreg"}]}}])
    assert "refused" in regression[0].invalid and p.model("numbers").ranking is None and p.model("numbers").running is None
