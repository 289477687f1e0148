"""A shared conformance check over every preset, in the spirit of River's estimator checks:
fresh builds are independent, models and model slots survive pickling unchanged."""

from __future__ import annotations

import itertools
import pickle

import pytest
from river import datasets

from stream_cd.config import PipelineConfig
from stream_cd.simulate.datasets import generate
from stream_cd.model_key import ModelKey
from stream_cd.learning.specs import PRESETS, ModelSpec

PRESET_NAMES = sorted(PRESETS)


def stream_for(task: str, n: int) -> list[tuple[dict, object]]:
    if task == "classification":
        return [(e["x"], e["y"]) for e in generate("agrawal", n, seed=11)]
    return list(itertools.islice(datasets.TrumpApproval(), n))


def outputs(model, task: str, probes: list[dict]) -> list:
    if task == "classification":
        return [(model.predict_one(x), model.predict_proba_one(x)) for x in probes]
    return [model.predict_one(x) for x in probes]


def other_preset(task: str, name: str) -> str:
    return next(p for p in PRESET_NAMES if PRESETS[p][1] == task and p != name)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_build_gives_independent_fresh_models(name: str) -> None:
    spec = ModelSpec.parse(name)
    task = spec.task
    data = stream_for(task, 300)
    probes = [x for x, _ in stream_for(task, 320)[300:]]
    a, b = spec.build(), spec.build()
    assert a is not b
    fresh = outputs(b, task, probes)
    for x, y in data:
        a.learn_one(x, y)
    assert outputs(b, task, probes) == fresh, "learning one build changed another"
    assert outputs(a, task, probes) != fresh, "learning changed nothing: the check has no power"
    # a fresh build trained on the same data learns the same model (seeded presets)
    c = spec.build()
    for x, y in data:
        c.learn_one(x, y)
    assert outputs(c, task, probes) == outputs(a, task, probes)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_model_pickles_to_the_same_predictions_and_keeps_learning_the_same(name: str) -> None:
    spec = ModelSpec.parse(name)
    task = spec.task
    data = stream_for(task, 400)
    probes = [x for x, _ in stream_for(task, 420)[400:]]
    model = spec.build()
    for x, y in data[:200]:
        model.learn_one(x, y)
    copy = pickle.loads(pickle.dumps(model))
    assert copy is not model and outputs(copy, task, probes) == outputs(model, task, probes)
    for x, y in data[200:]:
        model.learn_one(x, y)
        copy.learn_one(x, y)
    assert outputs(copy, task, probes) == outputs(model, task, probes)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_model_slot_pickles_round_trip_and_keeps_predicting_identically(name: str) -> None:
    task = PRESETS[name][1]
    config = PipelineConfig(model=name, shadow=other_preset(task, name), min_sample=50, report_every=50,
                            drop_budget=10_000)
    data = stream_for(task, 400)
    probes = [x for x, _ in stream_for(task, 420)[400:]]
    slot = ModelKey("k", config)
    for x, y in data[:200]:
        slot.learn(x, y, 0)
    copy = pickle.loads(pickle.dumps(slot))
    assert copy is not slot and copy.champion.model is not slot.champion.model
    assert copy.summary() == slot.summary()
    assert [copy.predict(x) for x in probes] == [slot.predict(x) for x in probes]
    assert copy.champion.spec.name == slot.champion.spec.name
    assert copy.book.lineage == slot.book.lineage
    # both go on learning and deciding the same way
    for x, y in data[200:]:
        assert copy.learn(x, y, 0) == slot.learn(x, y, 0)
    assert copy.summary() == slot.summary()
    assert outputs(copy.champion.model, task, probes) == outputs(slot.champion.model, task, probes)
    assert outputs(copy.challenger.model, task, probes) == outputs(slot.challenger.model, task, probes)
    # the copy's spec still builds fresh models (a later stateless retrain needs it)
    fresh = copy.champion.spec.build()
    assert type(fresh) is type(slot.champion.model) and fresh is not copy.champion.model
