"""The transport-free pipeline: bytes in, outcomes out (issue 3, items 1, 2 and 5)."""

from __future__ import annotations

import orjson
import pytest
from river import datasets, linear_model, preprocessing

from stream_cd.config import PipelineConfig
from stream_cd.simulate.datasets import generate
from stream_cd.pipeline import Pipeline

EXACT = PipelineConfig(model="logreg", drift="none")


def test_valid_invalid_and_prediction_outcomes_are_counted() -> None:
    p = Pipeline(EXACT)
    ok = p.process(b'{"key": "a", "x": {"f": 1.0}, "y": true}', ts=0)
    assert ok.invalid is None and ok.decisions == [] and ok.prediction is None and ok.served is None
    bad = p.process(b'{"key": "a", "x": "oops", "y": true}', ts=0)
    assert bad.invalid == "x is a string; it must be an object of features" and bad.event is None
    request = p.process(b'{"key": "a", "x": {"f": 2.0}}', ts=0)
    assert request.prediction is True and request.version == "v1.0" and request.decisions == []
    summary = p.summary()
    assert (summary["events"], summary["invalid"]) == (3, 1)
    assert summary["models"]["a"]["learned"] == 1 and summary["models"]["a"]["events_seen"] == 2


def test_each_model_key_has_its_own_slot() -> None:
    p = Pipeline(EXACT)
    for i in range(10):
        p.process(orjson.dumps({"key": "even" if i % 2 == 0 else "odd", "x": {"f": float(i)}, "y": i % 3 == 0}), ts=0)
    models = p.summary()["models"]
    assert list(models) == ["even", "odd"]
    assert models["even"]["learned"] == models["odd"]["learned"] == 5
    assert p.model("even") is not p.model("odd") and p.model("even").champion.model is not p.model("odd").champion.model


class Fussy:
    """A user's model that raises on events with a feature named boom."""

    def predict_one(self, x):
        if "boom" in x:
            raise ValueError("boom is not allowed")
        return True

    def learn_one(self, x, y):
        pass


def fussy() -> Fussy:
    return Fussy()


def test_a_feature_that_changes_kind_is_rejected_before_the_model_sees_it() -> None:
    p = Pipeline(EXACT)
    for x, y in list(datasets.Phishing())[:50]:
        assert p.process(orjson.dumps({"x": x, "y": y}), ts=0).invalid is None
    x, y = next(iter(datasets.Phishing()))
    out = p.process(orjson.dumps({"x": {**x, "https": "yes"}, "y": y}), ts=0)
    assert out.invalid is not None and "feature 'https' is 'yes', a string" in out.invalid
    summary = p.summary()
    assert summary["invalid"] == 1 and summary["models"]["default"]["learned"] == 50
    assert p.process(orjson.dumps({"x": x, "y": y}), ts=0).invalid is None
    assert p.summary()["models"]["default"]["learned"] == 51


def test_a_model_that_raises_on_an_event_makes_it_invalid_not_a_crash() -> None:
    p = Pipeline(PipelineConfig(model=f"{__name__}:fussy", drift="none", task="classification"))
    for x, y in list(datasets.Phishing())[:50]:
        assert p.process(orjson.dumps({"x": x, "y": y}), ts=0).invalid is None
    x, y = next(iter(datasets.Phishing()))
    out = p.process(orjson.dumps({"x": {**x, "boom": 1}, "y": y}), ts=0)
    assert out.invalid is not None and "cannot predict this event" in out.invalid and "boom is not allowed" in out.invalid
    summary = p.summary()
    assert summary["invalid"] == 1 and summary["models"]["default"]["learned"] == 50
    # and the pipeline goes on learning
    assert p.process(orjson.dumps({"x": x, "y": y}), ts=0).invalid is None
    assert p.summary()["models"]["default"]["learned"] == 51


def test_an_event_the_model_rejects_leaves_the_model_unchanged() -> None:
    data = list(datasets.Phishing())[:300]
    p = Pipeline(EXACT)
    reference = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for i, (x, y) in enumerate(data):
        assert p.process(orjson.dumps({"x": x, "y": y}), ts=0).invalid is None
        reference.learn_one(x, y)
        if i == 0:  # the scaler's variance is still zero, so predict passes and learn_one raises midway
            assert p.process(orjson.dumps({"x": {**x, "https": "yes"}, "y": y}), ts=0).invalid is not None
    model = p.model("default").champion.model
    probe = dict(list(datasets.Phishing())[700][0])
    assert model.predict_proba_one(probe) == reference.predict_proba_one(probe)


def test_event_ts_wins_over_the_message_time() -> None:
    from stream_cd.learning.triggers import TriggerSettings

    p = Pipeline(PipelineConfig(model="logreg", drift="none", triggers=TriggerSettings(every_s=1)))
    p.process(b'{"x": {"f": 1}, "y": true, "ts": 1000}', ts=999_999)
    out = p.process(b'{"x": {"f": 1}, "y": true}', ts=2000)  # no ts: the message time counts
    assert [(d.trigger, d.ts) for d in out.decisions] == [("time", 2000)]
    out = p.process(b'{"x": {"f": 1}, "y": true, "ts": 2500}', ts=10_000_000)
    assert out.decisions == []


def test_generated_agrawal_runs_clean_through_the_pipeline() -> None:
    p = Pipeline(PipelineConfig(model="hoeffding-tree", drift="none"))
    for e in generate("agrawal", 2000, seed=3):
        assert p.process(orjson.dumps(e), ts=0).invalid is None
    summary = p.summary()["models"]["default"]
    assert summary["learned"] == 2000 and summary["metric"]["value"] > 0.8


class LearnsNoBoom:
    """A user's model that predicts anything but cannot learn from events with a feature named boom."""

    def predict_one(self, x):
        return True

    def learn_one(self, x, y):
        if "boom" in x:
            raise ValueError("boom cannot be learned")


def learns_no_boom() -> LearnsNoBoom:
    return LearnsNoBoom()


def test_a_shadow_that_cannot_learn_a_valid_event_is_dropped_and_the_champion_keeps_it() -> None:
    p = Pipeline(PipelineConfig(model="logreg", shadow=f"{__name__}:learns_no_boom", drift="none"))
    assert p.process(b'{"x": {"f": 1.0}, "y": true}', ts=0).invalid is None
    out = p.process(b'{"x": {"f": 2.0, "boom": 1}, "y": true}', ts=0, offset=1)
    assert out.invalid is None  # the event is valid, and the champion has learned it
    [drop] = out.decisions
    assert (drop.action, drop.trigger, drop.arm, drop.challenger_version) == ("drop", "error", "challenger", "v2.0")
    assert f"arm 'challenger' ({__name__}:learns_no_boom v2.0) cannot learn this event" in drop.evidence["reason"]
    assert drop.decision_id == "default:0-1:error:drop"
    model = p.model("default")
    assert model.challenger is None and (model.learned, model.champion.learned) == (2, 2)
    assert p.summary()["models"]["default"]["drops"] == 1


def _mixed_messages() -> list[tuple[bytes, int]]:
    """Messages of every kind the pipeline meets, with their offsets: two model keys,
    events of sessions, requests, bad JSON, a feature and a label of the wrong kind, and a stretch of
    offsets that comes a second time (a redelivery), which must be skipped."""
    rows = [orjson.dumps({**e, "key": "even" if i % 2 else "odd", **({"session": f"u{i % 3}"} if i % 7 == 0 else {})})
            for i, e in enumerate(generate("agrawal", 600, seed=5))]
    rows[10] = b'{"x": '
    rows[20] = orjson.dumps({"key": "odd", "x": {"salary": "high"}, "y": 1})
    rows[30] = orjson.dumps({"key": "even", "x": {"salary": 1.0}, "y": 0.5})
    rows[40] = orjson.dumps({"key": "odd", "x": {"salary": 1.0, "age": 30}})
    rows[50] = orjson.dumps({"key": "even", "x": {"salary": 1.0, "flag": True}, "y": 1})
    messages = list(zip(rows, range(len(rows))))
    return messages[:400] + messages[350:380] + messages[400:]


def _decoded(messages: list[tuple[bytes, int]]) -> list:
    from stream_cd.errors import InvalidEvent
    from stream_cd.events import decode_event

    events = []
    for raw, _ in messages:
        try:
            events.append(decode_event(raw))
        except InvalidEvent as err:
            events.append(err)
    return events


def test_take_batch_does_what_take_does_message_by_message() -> None:
    config = PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="adwin", version_every=97, min_sample=100)
    messages = _mixed_messages()
    events, offsets = _decoded(messages), [offset for _, offset in messages]
    timestamps = [1_000 * offset for offset in offsets]
    one_by_one, batched, every = Pipeline(config), Pipeline(config), Pipeline(config)
    expected = []
    for i, (event, ts, offset) in enumerate(zip(events, timestamps, offsets)):
        outcome = one_by_one.take(event, ts, 3, offset)
        expected.append((i, outcome))
    got, got_every, start = [], [], 0
    for size in [1, 7, 50, 3, 250, 1000]:  # batches of every size, the last one short
        chunk = slice(start, start + size)
        for i, outcome in batched.take_batch(events[chunk], timestamps[chunk], offsets[chunk], 3):
            got.append((start + i, outcome))
        for i, outcome in every.take_batch(events[chunk], timestamps[chunk], offsets[chunk], 3, every=True):
            got_every.append((start + i, outcome))
        start += size
    acted_on = [(i, o) for i, o in expected if o.invalid is not None or o.decisions or o.served is not None]
    assert len(acted_on) > 10 and any(o.decisions for _, o in acted_on) and any(o.invalid for _, o in acted_on)
    assert got == acted_on
    assert sum(o.skipped for _, o in expected) == 30
    assert got_every == expected
    records = [r[0] for r in one_by_one.take_snapshots(force=True) + one_by_one.take_partition_records()]
    for p in (batched, every):
        assert p.summary() == one_by_one.summary()
        assert p.partitions == one_by_one.partitions
        assert {k: s.offsets for k, s in p.models.items()} == {k: s.offsets for k, s in one_by_one.models.items()}
        for key, slot in p.models.items():  # the sessions learned the same events
            theirs = one_by_one.models[key].sessions
            assert {u: slot.sessions.get(u).n for u in list(slot.sessions)} == {u: theirs.get(u).n for u in list(theirs)} != {}
        assert [r[0] for r in p.take_snapshots(force=True) + p.take_partition_records()] == records
    probe = events[-1].x
    assert batched.model("odd").champion.model.predict_proba_one(probe) == one_by_one.model("odd").champion.model.predict_proba_one(probe)


def test_take_batch_skips_what_a_key_restored_from_a_newer_state_has_taken_in() -> None:
    from stream_cd.events import decode_event

    events = [decode_event(orjson.dumps(e)) for e in generate("agrawal", 15, seed=2)]
    pipelines = [Pipeline(EXACT), Pipeline(EXACT)]
    for p in pipelines:
        p.model("default").offsets[0] = 10  # its key's state is newer than the partition's
    one_by_one = [pipelines[0].take(e, 0, 0, offset) for offset, e in enumerate(events)]
    assert [o.skipped for o in one_by_one] == [True] * 10 + [False] * 5
    assert pipelines[1].take_batch(events, [0] * 15, list(range(15))) == []
    assert pipelines[1].summary() == pipelines[0].summary() and pipelines[1].summary()["models"]["default"]["learned"] == 5
    assert pipelines[1].model("default").offsets == {0: 15} and pipelines[1].partitions[0].next_offset == 15
    pipelines[1].take_snapshots(force=True), pipelines[1].take_partition_records()
    pipelines[1].take_batch(events[:3], [0] * 3, [0, 1, 2])  # all before the partition's position: nothing changed
    assert pipelines[1].take_snapshots(force=True) == [] and pipelines[1].take_partition_records() == []


def _both_ways(config: PipelineConfig, events: list, batch: int = 125) -> tuple[Pipeline, Pipeline, list, list]:
    """The same events through take() one by one and through take_batch in batches."""
    one_by_one, batched = Pipeline(config), Pipeline(config)
    timestamps = [1_000 * i for i in range(len(events))]
    expected = [(i, one_by_one.take(e, timestamps[i], 0, i)) for i, e in enumerate(events)]
    expected = [(i, o) for i, o in expected if o.invalid is not None or o.decisions]
    got = []
    for start in range(0, len(events), batch):
        stop = start + batch
        got += [(start + i, o) for i, o in batched.take_batch(events[start:stop], timestamps[start:stop], list(range(start, min(stop, len(events)))))]
    assert batched.summary() == one_by_one.summary()
    for ours, theirs in ((batched.model("default"), one_by_one.model("default")),):
        assert (ours.events_seen, ours.learned) == (theirs.events_seen, theirs.learned)
        assert ours.champion.learned == theirs.champion.learned and ours.champion.label == theirs.champion.label
        assert (ours.challenger and (ours.challenger.learned, ours.challenger.label)) == (
            theirs.challenger and (theirs.challenger.learned, theirs.challenger.label))
    return batched, one_by_one, expected, got


@pytest.mark.parametrize("on_drift", ["challenge", "reset"])
def test_take_batch_decides_at_the_same_events_through_drift_and_promotions(on_drift: str) -> None:
    """One key, so that batches make long runs; every fifth event belongs to a session."""
    from stream_cd.events import decode_event

    config = PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="adwin", on_drift=on_drift,
                            min_sample=200, version_every=1000)
    events = [decode_event(orjson.dumps({**e, **({"session": f"u{i % 4}"} if i % 5 == 0 else {})}))
              for i, e in enumerate(generate("agrawal", 8000, seed=3, drift_at=4000))]
    batched, one_by_one, expected, got = _both_ways(config, events)
    ours, theirs = batched.model("default").sessions, one_by_one.model("default").sessions
    assert {u: ours.get(u).n for u in list(ours)} == {u: theirs.get(u).n for u in list(theirs)} != {}
    assert got == expected
    actions = {d.action for _, o in got for d in o.decisions}
    assert {"promote", "checkpoint", "retrain" if on_drift == "challenge" else "reset"} <= actions
    assert batched.model("default").learned == 8000


def test_take_batch_learns_regression_as_take_does() -> None:
    from river.datasets import synth

    from stream_cd.events import decode_event

    rows = [orjson.dumps({"x": {str(k): v for k, v in x.items()}, "y": y}) for x, y in synth.Friedman(seed=4).take(3000)]
    rows[100] = orjson.dumps({"x": {"0": 1.0}, "y": True})  # a label of the wrong kind
    events = [decode_event(r) for r in rows]
    config = PipelineConfig(model="linreg", shadow="linreg", drift="adwin", min_sample=100, drop_budget=500)
    _, _, expected, got = _both_ways(config, events, batch=64)
    assert got == expected and any(o.invalid for _, o in got) and any(o.decisions for _, o in got)
