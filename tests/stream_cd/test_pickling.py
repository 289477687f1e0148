"""State pickled by stream_cd.pickling comes back equal, with its attributes kept inline."""

from __future__ import annotations

import gc
import pickle
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

import orjson
from river import datasets

from stream_cd.config import PipelineConfig
from stream_cd.datasets import generate
from stream_cd.embedded import DirectoryStore, EmbeddedTransport
from stream_cd.pickling import dumps, loads
from stream_cd.pipeline import Pipeline
from stream_cd.slot import ModelSlot
from stream_cd.transport import Topics
from stream_cd.worker import run_worker


class Plain:
    def __init__(self) -> None:
        self.items = [1, 2]
        self.table = {"a": [3]}
        self.me = self  # a cycle through its own state


class OwnSetstate:
    """Like River's StandardScaler: fills a default, then updates ``__dict__``."""

    def __init__(self) -> None:
        self.counts = Counter(a=2)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("window", None)
        self.__dict__.update(state)


@dataclass(frozen=True)
class Frozen:
    name: str
    sizes: tuple


def keeps_inline(obj, names) -> bool:
    """Whether the object holds its attributes itself: then the collector sees each value
    as its referent; once they live in a ``__dict__``, it sees the dict instead."""
    referents = gc.get_referents(obj)
    return all(any(r is getattr(obj, name) for r in referents) for name in names)


def test_plain_objects_come_back_equal_and_inline():
    copy = loads(dumps(Plain()))
    assert copy.items == [1, 2] and copy.table == {"a": [3]} and copy.me is copy
    assert keeps_inline(copy, ["items", "table"])
    assert not keeps_inline(pickle.loads(pickle.dumps(Plain())), ["items", "table"])  # the check tells


def test_a_class_with_its_own_setstate_still_runs_it():
    copy = loads(dumps(OwnSetstate()))
    assert copy.counts == Counter(a=2) and copy.window is None
    assert keeps_inline(copy, ["counts"])


def test_frozen_dataclasses_and_containers_round_trip():
    state = {"frozen": Frozen("x", (1, 2)), "counter": Counter(b=1), "dd": defaultdict(float, c=1.5)}
    copy = loads(dumps(state))
    assert copy == state and copy["dd"].default_factory is float


def test_a_restored_slot_learns_exactly_as_the_original():
    events = list(datasets.Phishing())
    config = PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="adwin")
    original, restored = ModelSlot("k", config), ModelSlot("k", config)
    for x, y in events[:600]:
        original.learn(x, y, ts=0)
        restored.learn(x, y, ts=0)
    restored = loads(dumps(restored))
    for x, y in events[600:]:
        assert original.learn(x, y, ts=0) == restored.learn(x, y, ts=0)
    assert original.summary() == restored.summary()
    scaler = restored.champion.model["StandardScaler"]
    assert keeps_inline(scaler, ["counts", "means", "vars"])


def test_a_worker_that_checkpoints_goes_on_with_fast_copies_and_learns_the_same(tmp_path):
    events = [orjson.dumps(e) for e in generate("agrawal", n=1_500, seed=5)]
    config = PipelineConfig(model="logreg", shadow="logreg", drift="adwin")
    reference, checkpointed = Pipeline(config), Pipeline(config)
    run_worker(EmbeddedTransport(events), reference, Topics())
    stats = run_worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)), checkpointed, Topics(),
                       state_key=b"test-state-key-0123456789abcdef", batch_size=100, commit_every_events=200)
    assert stats.checkpoints_written >= 8
    assert checkpointed.summary() == reference.summary()
    for candidate in (checkpointed.slots["default"].champion, checkpointed.slots["default"].challenger):
        assert keeps_inline(candidate.model["StandardScaler"], ["counts", "means", "vars"])


def test_strings_come_back_interned_and_old_plain_pickles_still_load():
    name = "".join(["sal", "ary"])  # not interned
    restored = loads(dumps({name: [name]}))
    key = next(iter(restored))
    assert key is sys.intern("salary") and restored[key][0] is key
    assert loads(pickle.dumps(Plain())).items == [1, 2]  # a checkpoint written before
