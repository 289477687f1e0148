"""Delayed feedback: requests served at once, labels joined later to what was served."""

from __future__ import annotations

import pickle

import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, stream

from stream_cd.config import PipelineConfig
from stream_cd.errors import InvalidEvent
from stream_cd.model_key import ModelKey
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.datasets import generate
from stream_cd.state.pickling import dumps, loads

EXACT = PipelineConfig(model="logreg", drift="none")


def qa_messages(dataset, delay: int, key: str = "default") -> list[bytes]:
    """River's question/answer order for a delay, as request and feedback events."""
    out = []
    for i, x, y in stream.simulate_qa(dataset, moment=None, delay=delay):
        event = {"key": key, "id": f"r{i}", "ts": 1_000 * len(out)}
        event.update({"x": x} if y is None else {"y": y})
        out.append(orjson.dumps(event))
    return out


@pytest.mark.parametrize("delay", [1, 500])
def test_delayed_labels_give_exactly_rivers_progressive_validation_with_delay(delay: int) -> None:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    expected = evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy(), delay=delay).get()
    p = Pipeline(EXACT)
    for offset, raw in enumerate(qa_messages(datasets.Phishing(), delay)):
        assert p.process(raw, ts=0, offset=offset).invalid is None
    summary = p.summary()["models"]["default"]
    assert summary["metric"]["value"] == expected
    assert summary["learned"] == 1250 and summary["feedback"] == {"pending": 0, "joined": 1250, "expired": 0, "rejected": 0}


def test_a_late_label_is_scored_against_what_was_served_not_the_model_since() -> None:
    key, labeled_only = ModelKey("k", EXACT), ModelKey("k", EXACT)
    data = list(datasets.Phishing())
    served = [key.serve(x, ts=i, ident=f"r{i}")[0].served for i, (x, _) in enumerate(data[:300])]
    for k in (key, labeled_only):  # the champion learns a lot in between
        for x, y in data[300:1000]:
            k.learn(x, y, ts=500)
    assert [key.predict(x) for x, _ in data[:300]] != served, "the model changed: the check has power"
    for i, (_, y) in enumerate(data[:300]):
        key.feedback(f"r{i}", y, ts=1_000 + i)
    hits_then = sum(s == y for s, (_, y) in zip(served, data[:300]))
    assert key.learned == 1000
    assert round(key.metric.get() * 1000) == round(labeled_only.metric.get() * 700) + hits_then


def test_feedback_for_unknown_answered_and_expired_requests_is_rejected_with_the_reason() -> None:
    p = Pipeline(PipelineConfig(model="logreg", drift="none", max_pending=2, feedback_ttl_s=10))
    def send(offset: int, event: dict):
        return p.process(orjson.dumps({"key": "k", **event}), ts=0, offset=offset)
    assert send(0, {"id": "a", "ts": 0, "x": {"f": 1.0}}).prediction is not None
    assert send(1, {"id": "a", "ts": 1, "y": True}).invalid is None
    assert "already had its feedback" in send(2, {"id": "a", "ts": 2, "y": True}).invalid
    assert "no such request is waiting" in send(3, {"id": "zz", "ts": 3, "y": True}).invalid
    send(4, {"id": "b", "ts": 4, "x": {"f": 1.0}})
    send(5, {"id": "c", "ts": 5, "x": {"f": 1.0}})
    send(6, {"id": "d", "ts": 6, "x": {"f": 1.0}})  # a third waiting request: b, the oldest, expires
    assert "came after its request expired" in send(7, {"id": "b", "ts": 7, "y": True}).invalid
    send(8, {"id": "e", "ts": 20_000, "x": {"f": 1.0}})  # 20 s later: c and d are older than the 10 s TTL
    assert "feedback TTL of 10 s" in send(9, {"id": "d", "ts": 20_001, "y": False}).invalid
    assert "already waiting" in send(10, {"id": "e", "ts": 20_002, "x": {"f": 1.0}}).invalid
    summary = p.summary()
    assert summary["invalid"] == 5
    assert summary["models"]["k"]["feedback"] == {"pending": 1, "joined": 1, "expired": 3, "rejected": 5}
    assert summary["models"]["k"]["learned"] == 1


def test_a_default_label_learns_requests_whose_feedback_never_came() -> None:
    config = PipelineConfig(model="logreg", drift="none", max_pending=100, feedback_default=False)
    key = ModelKey("k", config)
    for i in range(250):
        key.serve({"f": float(i % 7)}, ts=i, ident=f"r{i}")
    assert key.learned == 150 and key.exposures.stats()["expired"] == 150  # the oldest 150, as the label False
    assert key.champion.learned == 150 and len(key.exposures) == 100
    off = ModelKey("k", PipelineConfig(model="logreg", drift="none", max_pending=100))
    for i in range(250):
        off.serve({"f": float(i % 7)}, ts=i, ident=f"r{i}")
    assert off.learned == 0 and off.exposures.stats()["expired"] == 150


def test_the_memory_of_waiting_requests_is_bounded() -> None:
    key = ModelKey("k", PipelineConfig(model="logreg", drift="none", max_pending=1000))
    for i, e in enumerate(generate("agrawal", 20_000, seed=1)):
        key.serve(e["x"], e["ts"], ident=f"r{i}")
    assert len(key.exposures) == 1000 and len(key.exposures.closed) == 10_000
    assert key.exposures.stats()["expired"] == 19_000


def test_waiting_exposures_survive_a_checkpoint_and_join_as_in_an_uninterrupted_run() -> None:
    config = PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="none", min_sample=50)
    data = list(datasets.Phishing())
    straight, interrupted = ModelKey("k", config), ModelKey("k", config)
    for key in (straight, interrupted):
        for i, (x, _) in enumerate(data[:400]):
            key.serve(x, ts=i, ident=f"r{i}")
    interrupted = loads(dumps(interrupted))  # the checkpoint's own pickling
    for key in (straight, interrupted):
        assert len(key.exposures) == 400
        assert key.exposures.pending["r7"].outputs[0][0] is key.champion  # the arms are the key's own arms
        for i, (_, y) in enumerate(data[:400]):
            key.feedback(f"r{i}", y, ts=1_000 + i)
    assert interrupted.summary() == straight.summary()
    assert pickle.loads(pickle.dumps(straight)).summary() == straight.summary()


def test_an_arm_that_was_promoted_in_between_is_scored_on_what_it_output_as_challenger() -> None:
    key = ModelKey("k", PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="none", min_sample=10))
    x = {"f": 1.0}
    exposure, _ = key.serve(x, ts=0, ident="r1")
    champion, challenger = key.champion, key.challenger
    key.promote()
    assert key.champion is challenger
    before = (champion.learned, challenger.learned)
    key.feedback("r1", True, ts=1)
    assert (champion.learned, challenger.learned) == (before[0] + 1, before[1] + 1)
    assert key.policy.experiment.pairs == 1  # the pair: the new champion's and the new challenger's outputs then


def test_feedback_with_a_label_of_the_wrong_kind_is_rejected_and_the_request_waits_for_a_valid_one() -> None:
    key = ModelKey("k", PipelineConfig(model="linreg", drift="none"))
    key.serve({"f": 1.0}, ts=0, ident="r1")
    with pytest.raises(InvalidEvent, match="regression task needs a number"):
        key.feedback("r1", True, ts=1)
    assert key.learned == 0 and key.exposures.stats() == {"pending": 1, "joined": 0, "expired": 0, "rejected": 0}
    key.feedback("r1", 2.5, ts=2)  # the label corrected
    assert key.learned == 1 and key.exposures.stats()["joined"] == 1


def test_feedback_later_than_the_ttl_after_its_request_is_refused_whatever_came_between() -> None:
    key = ModelKey("k", PipelineConfig(model="logreg", drift="none", feedback_ttl_s=10))
    key.serve({"f": 1.0}, ts=0, ident="r1")
    key.serve({"f": 2.0}, ts=0, ident="r2")
    with pytest.raises(InvalidEvent, match="came 10.001 s after its request, later than the feedback TTL of 10 s"):
        key.feedback("r1", True, ts=10_001)  # nothing else came in between to move the clock
    key.feedback("r2", True, ts=10_000)
    assert key.learned == 1 and key.exposures.stats()["joined"] == 1
