"""State pickled by stream_cd.state.pickling comes back equal, with its attributes kept inline."""

from __future__ import annotations

import copyreg
import gc
import pickle
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

import orjson
import pytest
from river import datasets, preprocessing

from stream_cd.config import PipelineConfig
from stream_cd.simulate.datasets import generate
from stream_cd.embedded import DirectoryStore, EmbeddedTransport
from stream_cd.errors import StateError
from stream_cd.state.pickling import dumps, loads
from stream_cd.pipeline import Pipeline
from stream_cd.state.schedule import SnapshotSchedule
from stream_cd.model_key import ModelKey
from stream_cd.state.signing import load_state, seal
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
    scaler = preprocessing.StandardScaler()  # a known __setstate__ that only fills defaults
    scaler.learn_one({"a": 1.0})
    restored = loads(dumps(scaler))
    assert restored.window_size is None and restored.counts == Counter(a=1)
    assert keeps_inline(restored, ["counts", "means"])


def test_frozen_dataclasses_and_containers_round_trip():
    state = {"frozen": Frozen("x", (1, 2)), "counter": Counter(b=1), "dd": defaultdict(float, c=1.5)}
    copy = loads(dumps(state))
    assert copy == state and copy["dd"].default_factory is float


def test_a_restored_slot_learns_exactly_as_the_original():
    events = list(datasets.Phishing())
    config = PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="adwin")
    original, restored = ModelKey("k", config), ModelKey("k", config)
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
    reference, checkpointed = Pipeline(config), Pipeline(config, snapshots=SnapshotSchedule(every_events=200))
    run_worker(EmbeddedTransport(events), reference, Topics())
    inline: list[bool] = []  # after each batch, the arms the worker goes on learning with

    def look(_: int) -> None:
        key = checkpointed.models["default"]
        inline.append(all(keeps_inline(arm.model["StandardScaler"], ["counts", "means", "vars"])
                          for arm in (key.champion, key.challenger)))

    stats = run_worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)), checkpointed, Topics(),
                       state_key=b"test-state-key-0123456789abcdef", batch_size=100, commit_every_events=200,
                       on_batch=look)
    assert stats.checkpoints_written >= 8
    assert checkpointed.summary() == reference.summary()
    assert len(inline) == 15 and all(inline)  # a stopping worker's final snapshots need no copy: not checked


def test_strings_come_back_interned_and_old_plain_pickles_still_load():
    name = "".join(["sal", "ary"])  # not interned
    restored = loads(dumps({name: [name]}))
    key = next(iter(restored))
    assert key is sys.intern("salary") and restored[key][0] is key
    assert loads(pickle.dumps(Plain())).items == [1, 2]  # a checkpoint written before


class Counted:
    """Its __setstate__ ties a bound method to the object itself: it must run on the object."""

    def __init__(self) -> None:
        self.n = 0
        self.bump = self._bump

    def _bump(self) -> None:
        self.n += 1

    def __getstate__(self) -> dict:
        return {"n": self.n}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.bump = self._bump


class Registered:
    def __init__(self) -> None:
        self.value = 1
        self.cache = "big"


def _rebuild_registered(value):
    obj = Registered.__new__(Registered)
    obj.value, obj.rebuilt = value, True
    return obj


def test_other_classes_keep_their_own_way_back():
    copy = loads(dumps(Counted()))
    copy.bump()
    assert copy.n == 1  # the method is bound to the copy, as with plain pickle
    copyreg.pickle(Registered, lambda r: (_rebuild_registered, (r.value,)))
    try:
        assert vars(loads(dumps(Registered()))) == {"value": 1, "rebuilt": True}
    finally:
        del copyreg.dispatch_table[Registered]
    odd = Plain()
    odd.__dict__[1] = "not a name"
    assert loads(dumps(odd)).__dict__[1] == "not a name"


def test_a_signed_checkpoint_that_cannot_be_loaded_is_refused_not_raised():
    key = b"test-state-key-0123456789abcdef"
    blob = seal(b"\x80\x05not a pickle", key, b"model:k")
    with pytest.raises(StateError, match="signed but cannot be loaded"):
        load_state(blob, key, "model key 'k'", "model:k")
