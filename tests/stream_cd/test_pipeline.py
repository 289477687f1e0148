"""The transport-free pipeline: bytes in, outcomes out (issue 3, items 1, 2 and 5)."""

from __future__ import annotations

import orjson
from river import datasets, linear_model, preprocessing

from stream_cd.config import PipelineConfig
from stream_cd.datasets import generate
from stream_cd.pipeline import Pipeline

EXACT = PipelineConfig(model="logreg", drift="none")


def test_valid_invalid_and_prediction_outcomes_are_counted() -> None:
    p = Pipeline(EXACT)
    ok = p.process(b'{"key": "a", "x": {"f": 1.0}, "y": true}', ts=0)
    assert ok.invalid is None and ok.event is not None and ok.version == "v1.0" and ok.prediction is None
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
    assert p.slot("even") is not p.slot("odd") and p.slot("even").champion.model is not p.slot("odd").champion.model


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
    model = p.slot("default").champion.model
    probe = dict(list(datasets.Phishing())[700][0])
    assert model.predict_proba_one(probe) == reference.predict_proba_one(probe)


def test_event_ts_wins_over_the_message_time() -> None:
    from stream_cd.triggers import TriggerSettings

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
