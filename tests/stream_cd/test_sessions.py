"""Per-session adaptation (issue 5): adapters and the bounded, expiring, picklable SessionStore."""

from __future__ import annotations

import functools
import itertools
import pickle

import pytest

from stream_cd.simulate.population import sessions_population
from stream_cd.serving.sessions import ClassCounts, LogitResidual, MeanShift, SessionStore, top_class
from stream_cd.learning.specs import ModelSpec

G = {False: 0.7, True: 0.3}
X = {"f": 1.0, "colour": "red"}


def test_a_new_session_gets_the_global_prediction_itself_and_creates_no_state() -> None:
    store = SessionStore(max_sessions=5, ttl_ms=1000)
    assert store.predict("new", X, G, ts=0) is G
    assert len(store) == 0 and store.stats()["created"] == 0


@pytest.mark.parametrize("factory", [LogitResidual, functools.partial(LogitResidual, features=()),
                                     ClassCounts, functools.partial(LogitResidual, blend=3.0)])
def test_feedback_moves_the_session_towards_its_labels_and_the_weight_grows(factory) -> None:
    a = factory()
    assert a.weight == 0.0 and a.predict(X, G) is G
    probs, weights = [], []
    for _ in range(8):
        a.learn(X, True, G)
        probs.append(a.predict(X, G)[True])
        weights.append(a.weight)
    assert probs[0] > G[True] and all(b > p for p, b in zip(probs, probs[1:]))
    assert probs[-1] > 0.5
    assert all(0.0 < w < 1.0 for w in weights) and all(b > w for w, b in zip(weights, weights[1:]))
    assert sum(a.predict(X, G).values()) == pytest.approx(1.0)


def test_the_residual_learns_a_session_feature_effect_the_offset_cannot() -> None:
    full, offset = LogitResidual(), LogitResidual(features=())
    g = {False: 0.5, True: 0.5}
    for f in itertools.islice(itertools.cycle([-1.0, 1.0]), 40):  # this session: True iff f > 0
        full.learn({"f": f}, f > 0, g)
        offset.learn({"f": f}, f > 0, g)
    assert full.predict({"f": 1.0}, g)[True] > 0.75 and full.predict({"f": -1.0}, g)[True] < 0.25
    assert offset.predict({"f": 1.0}, g)[True] == pytest.approx(offset.predict({"f": -1.0}, g)[True])


def test_a_class_only_the_session_has_shown_is_served() -> None:
    a = LogitResidual()
    for _ in range(15):
        a.learn({}, "c", {"a": 0.6, "b": 0.4})
    assert top_class(a.predict({}, {"a": 0.6, "b": 0.4})) == "c"


def test_mean_shift_corrects_a_regression_session() -> None:
    a = MeanShift(prior=1.0)
    assert a.predict({}, 5.0) == 5.0
    for _ in range(9):
        a.learn({}, 8.0, 5.0)
    assert a.predict({}, 5.0) == pytest.approx(5.0 + 27.0 / 10.0)


def test_lru_evicts_the_least_recently_active_and_the_store_stays_bounded() -> None:
    store = SessionStore(ClassCounts, max_sessions=3, ttl_ms=None)
    for s in "abc":
        store.learn(s, {}, True, G, ts=0)
    store.predict("a", {}, G, ts=1)  # a prediction request makes "a" recent too
    store.learn("d", {}, True, G, ts=2)
    assert list(store) == ["c", "a", "d"]  # "b" evicted
    for i in range(100):
        store.learn(f"s{i}", {}, True, G, ts=3)
        assert len(store) <= 3
    assert list(store) == ["s97", "s98", "s99"]
    assert store.stats() == {"sessions": 3, "created": 104, "evicted": 101, "expired": 0}
    assert store.predict("b", {}, G, ts=4) is G  # an evicted session starts from the global model


def test_an_idle_session_past_the_ttl_starts_fresh_and_activity_keeps_it_alive() -> None:
    store = SessionStore(LogitResidual, max_sessions=10, ttl_ms=1000)
    for t in range(0, 5000, 900):  # never idle longer than the TTL
        store.learn("alive", X, True, G, ts=t)
    assert store.get("alive", ts=5000).n == 6
    store.learn("idle", X, True, G, ts=0)
    assert store.predict("idle", X, G, ts=1000) != G  # exactly the TTL: still alive
    assert store.predict("idle", X, G, ts=2001) is G  # idle 1001 ms: fresh
    assert "idle" not in store and store.expired == 1
    store.learn("idle", X, False, G, ts=2002)
    assert store.get("idle").n == 1 and store.created == 3


def test_events_without_a_time_neither_expire_nor_refresh() -> None:
    store = SessionStore(ClassCounts, ttl_ms=1000)
    store.learn("s", {}, True, G, ts=0)
    store.learn("s", {}, True, G)  # no ts
    assert store.predict("s", {}, G, ts=1500) is G and store.expired == 1


def test_the_store_pickles_round_trip_and_keeps_learning_identically() -> None:
    store = SessionStore(functools.partial(LogitResidual, prior_bias=2.0), max_sessions=50, ttl_ms=10_000)
    events = list(sessions_population(30, 10, seed=5))
    for e in events[:150]:
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    copy = pickle.loads(pickle.dumps(store))
    assert copy is not store and list(copy) == list(store) and copy.stats() == store.stats()
    for e in events[150:]:
        assert copy.predict(e["session"], e["x"], G, e["ts"]) == store.predict(e["session"], e["x"], G, e["ts"])
        copy.learn(e["session"], e["x"], e["y"], G, e["ts"])
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    assert copy.stats() == store.stats()
    assert copy.get(events[-1]["session"]).prior_bias == 2.0


def test_adapting_one_session_leaves_other_sessions_and_the_global_model_untouched() -> None:
    events = list(sessions_population(40, 10, seed=9))
    model = ModelSpec.parse("logreg").build()
    for e in events[:200]:
        model.learn_one(e["x"], e["y"])
    store = SessionStore(LogitResidual)
    for e in events[200:300]:
        store.learn(e["session"], e["x"], e["y"], model.predict_proba_one(e["x"]), e["ts"])
    probes = [e["x"] for e in events[300:320]]
    sessions = list(store)
    target, others = sessions[0], sessions[1:]
    ts = events[299]["ts"]
    global_before = [model.predict_proba_one(x) for x in probes]
    before = {s: [store.predict(s, x, model.predict_proba_one(x), ts) for x in probes] for s in others}
    weights = pickle.dumps(model)
    adapted_before = [store.predict(target, x, model.predict_proba_one(x), ts) for x in probes]
    for x in probes * 3:  # the target session gives a lot of contrary feedback
        store.learn(target, x, not top_class(model.predict_proba_one(x)), model.predict_proba_one(x), ts)
    assert [store.predict(target, x, model.predict_proba_one(x), ts) for x in probes] != adapted_before
    assert pickle.dumps(model) == weights
    assert [model.predict_proba_one(x) for x in probes] == global_before
    assert {s: [store.predict(s, x, model.predict_proba_one(x), ts) for x in probes] for s in others} == before


def test_the_store_rejects_a_bound_of_nothing() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        SessionStore(max_sessions=0)
    with pytest.raises(ValueError, match="ttl_ms"):
        SessionStore(ttl_ms=0)


@pytest.mark.parametrize("adapter", [LogitResidual, ClassCounts, MeanShift])
def test_a_store_pickles_its_adapters_under_the_path_earlier_versions_import(adapter) -> None:
    """The adapters live in stream_cd.serving.session_adapters, but a checkpoint names them by
    stream_cd.serving.sessions, where a worker of the version before looks for them."""
    store = SessionStore(adapter, max_sessions=4, ttl_ms=None)
    store.learn("s", {"f": 1.0}, 1.0 if adapter is MeanShift else True, 0.5 if adapter is MeanShift else G, ts=0)
    blob = pickle.dumps(store)
    assert b"session_adapters" not in blob and b"stream_cd.serving.sessions" in blob
    restored = pickle.loads(blob)
    assert type(restored.get("s")) is adapter


def test_extreme_features_never_make_a_session_serve_nan_nor_reach_the_shared_prior() -> None:
    """Finite but extreme values push a session's weights past what floats hold: it serves the
    global prediction then, and its draws teach the population prior nothing."""
    import math

    store = SessionStore(LogitResidual, max_sessions=100, ttl_ms=None)
    even = {False: 0.5, True: 0.5}
    for i, (x, y) in enumerate([({"a": 2000.0, "b": 2000.0}, True)] * 3 + [({"a": 1e300, "b": 1e300}, False)]
                               + [({"a": 1e300, "b": -1e300}, True)] * 4):
        store.learn("extreme", x, y, even, ts=i)
    assert store.predict("extreme", {"a": 1e300, "b": -1e300}, even) == even
    assert all(math.isfinite(sd) for sd in store.prior.spreads().values())
    store.learn("honest", {"a": 1.0, "c": 1.0}, True, even, ts=20)
    assert all(math.isfinite(p) for p in store.predict("honest", {"a": 1.0, "c": 1.0}, even).values())


def test_a_session_of_ever_new_string_values_stays_bounded() -> None:
    from stream_cd.serving.session_adapters import MAX_NAMES

    store = SessionStore(LogitResidual, max_sessions=10, ttl_ms=None)
    even = {False: 0.5, True: 0.5}
    for i in range(5_000):
        store.learn("browsing", {"page": f"p{i}", "f": 1.0}, i % 3 == 0, even, ts=i)
    adapter = store.get("browsing")
    assert all(len(w) == MAX_NAMES for w in adapter._w.values()) and len(pickle.dumps(adapter)) < 40_000
    assert adapter.predict({"page": "p1", "f": 1.0}, even) != adapter.predict({"page": "p4999", "f": 1.0}, even)
