"""Event streams from River's generators and bundled datasets (issue 3, item 12)."""

from __future__ import annotations

import itertools

import orjson
import pytest
from river import datasets
from river.datasets import synth

from stream_cd.simulate.datasets import GENERATORS, START_TS, STEP_MS, generate
from stream_cd.errors import ConfigError
from stream_cd.events import decode_event


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_stream_gives_valid_events_in_the_design_format(name: str) -> None:
    events = list(generate(name, 200, seed=3, key="k"))
    assert len(events) == 200
    for i, e in enumerate(events):
        assert e["key"] == "k" and e["id"] == f"{name}-3-{i}" and e["ts"] == START_TS + i * STEP_MS
        ev = decode_event(orjson.dumps(e))
        assert ev.labeled and ev.x == e["x"] and all(isinstance(k, str) for k in ev.x)


@pytest.mark.parametrize("name", ["agrawal", "sea", "hyperplane"])
def test_same_seed_same_stream_other_seed_other_stream(name: str) -> None:
    a = [orjson.dumps(e) for e in generate(name, 300, seed=5)]
    assert a == [orjson.dumps(e) for e in generate(name, 300, seed=5)]
    assert a != [orjson.dumps(e) for e in generate(name, 300, seed=6)]


def test_agrawal_follows_rivers_generator_and_switches_concept_at_drift_at() -> None:
    n, k = 400, 250
    events = list(generate("agrawal", n, seed=7, drift_at=k))
    first = list(itertools.islice(synth.Agrawal(classification_function=0, seed=7), k))
    second = list(itertools.islice(synth.Agrawal(classification_function=2, seed=8), n - k))
    for e, (x, y) in zip(events, first + second):
        assert e["x"] == x and e["y"] is bool(y)
    # the part before the change is the undrifted stream
    assert events[:k] == list(generate("agrawal", k, seed=7))


def test_hyperplane_feature_names_and_phishing_is_the_bundled_dataset() -> None:
    e = next(generate("hyperplane", 1, seed=1))
    assert sorted(e["x"]) == sorted(f"x{i}" for i in range(10))
    phishing = list(generate("phishing", 1250))
    assert [(e["x"], e["y"]) for e in phishing] == [(x, y) for x, y in datasets.Phishing()]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "elec2", "n": 10}, "unknown generator 'elec2'"),
        ({"name": "agrawal", "n": -1}, "--n -1"),
        ({"name": "agrawal", "n": 100, "drift_at": 0}, "--drift-at 0"),
        ({"name": "agrawal", "n": 100, "drift_at": 100}, "--drift-at 100"),
        ({"name": "phishing", "n": 1251}, "phishing has 1250 events"),
        ({"name": "phishing", "n": 100, "drift_at": 50}, "no --drift-at"),
    ],
)
def test_bad_requests_are_config_errors_naming_the_value(kwargs, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        list(generate(**kwargs))


def test_zero_events() -> None:
    assert list(generate("sea", 0)) == []
