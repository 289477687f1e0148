"""Batches crossing from the fetch process to the worker keep their content, and their
feature names and model keys are the worker's own copies."""

from __future__ import annotations

import random

import orjson

from consumers.batch_pickle import BatchPickler, BatchUnpickler
from stream_cd.state import pickling
from stream_cd.errors import InvalidEvent
from stream_cd.events import Event, decode_event


def _cross(pickler: BatchPickler, unpickler: BatchUnpickler, message: tuple) -> tuple[tuple, bool]:
    """The message as the worker gets it, and whether new strings went first."""
    strings = pickler.share(message[-1])
    if strings is not None:
        unpickler.add(strings)
    return unpickler.loads(pickler.dumps(message)), strings is not None


def _message(raws: list[bytes], first_offset: int) -> tuple:
    events: list = []
    for raw in raws:
        try:
            events.append(decode_event(raw))
        except InvalidEvent as err:
            events.append(err)
    offsets = list(range(first_offset, first_offset + len(raws)))
    return ("batch", 0, 1, offsets, [1_700_000_000_000 + o for o in offsets], [b"k"] * len(raws), raws, events)


def _raws(rng: random.Random, n: int, names: list[str], keys: list[str]) -> list[bytes]:
    return [orjson.dumps({"key": rng.choice(keys), "x": {name: rng.random() for name in rng.sample(names, 3)},
                          "y": rng.random() < 0.5}) for _ in range(n)]


def _same(got: list, sent: list) -> bool:
    def fields(e):
        return (type(e), e.reason) if isinstance(e, InvalidEvent) else (e.key, e.x, e.y, e.id, e.ts, e.session, e.source)
    return [fields(e) for e in got] == [fields(e) for e in sent]


def test_batches_keep_their_content_and_share_names_and_keys():
    rng = random.Random(3)
    names, keys = [f"f{i}" for i in range(6)], ["alpha", "beta"]
    pickler, unpickler = BatchPickler(), BatchUnpickler()
    seen: dict[str, str] = {}  # text -> the worker's object for it
    new_strings = []
    for batch in range(4):
        raws = _raws(rng, 300, names, keys) + [b"not json", b'{"x": [1]}', b'{"key": "beta", "id": "r1", "y": true}']
        rng.shuffle(raws)
        message = _message(raws, 300 * batch)
        got, sent_strings = _cross(pickler, unpickler, message)
        new_strings.append(sent_strings)
        assert got[:7] == message[:7]  # offsets, timestamps, record keys and values as sent
        assert _same(got[7], message[7])
        for event in got[7]:
            if type(event) is Event:
                for text in (event.key, *(event.x or ())):
                    assert seen.setdefault(text, text) is text, f"{text!r} arrived as a second copy"
    assert new_strings[0] and not any(new_strings[1:])  # every string went across once
    assert sorted(seen) == sorted(names + keys)


def test_strings_past_the_limit_arrive_whole_without_being_shared():
    pickler, unpickler = BatchPickler(limit=3), BatchUnpickler()  # (names of one letter are shared by Python itself)
    first, _ = _cross(pickler, unpickler, _message([b'{"key": "k1", "x": {"age": 1, "pay": 2, "car": 3}}'], 0))
    second, sent = _cross(pickler, unpickler, _message([b'{"key": "k1", "x": {"age": 4, "pay": 5, "car": 6}}'], 1))
    assert not sent
    assert second[7][0].x == {"age": 4, "pay": 5, "car": 6} and second[7][0].key == "k1"
    shared = {name: name is next(n for n in first[7][0].x if n == name) for name in second[7][0].x}
    assert second[7][0].key is first[7][0].key
    assert shared == {"age": True, "pay": True, "car": False}  # the key and two names filled the table


def test_copies_of_a_name_arrive_as_the_one_shared_object():
    pickler, unpickler = BatchPickler(), BatchUnpickler()
    long_name = "feature_" + "x" * 70  # longer than orjson caches: a new object every decode
    first, _ = _cross(pickler, unpickler, _message([orjson.dumps({"x": {long_name: 1.0, "salary": 1.0}})], 0))
    copy = "".join(["sal", "ary"])  # equal text, another object
    event = Event("default", {copy: 2.0}, True)
    second, sent = _cross(pickler, unpickler, ("batch", 0, 1, [1], [0], [None], [b"{}"], [event]))
    third, _ = _cross(pickler, unpickler, _message([orjson.dumps({"x": {long_name: 3.0}})], 2))
    assert not sent and second[7][0].x == {"salary": 2.0} and second[7][0].y is True
    shared = {name: name for name in first[7][0].x}
    assert next(iter(second[7][0].x)) is shared["salary"]
    assert next(iter(third[7][0].x)) is shared[long_name]


def test_hundreds_of_names_all_shared():
    rng = random.Random(11)
    names = [f"feature_{i:04d}" for i in range(700)]  # numbers past 256 take four bytes in a pickle
    pickler, unpickler = BatchPickler(), BatchUnpickler()
    seen: dict[str, str] = {}
    for batch in range(3):
        raws = [orjson.dumps({"key": f"k{rng.randrange(3)}", "x": {n: rng.random() for n in rng.sample(names, 40)}})
                for _ in range(200)]
        message = _message(raws, 200 * batch)
        got, _ = _cross(pickler, unpickler, message)
        assert _same(got[7], message[7])
        for event in got[7]:
            for text in (event.key, *event.x):
                assert seen.setdefault(text, text) is text
    assert len(seen) == 703


def test_a_restored_model_holds_the_very_names_batches_bring():
    pickler, unpickler = BatchPickler(), BatchUnpickler()
    got, _ = _cross(pickler, unpickler, _message([b'{"x": {"hvalue": 1.0, "loan": 2.0}}'], 0))
    model_state = {"".join(["hv", "alue"]): 0.5, "".join(["lo", "an"]): 0.25}  # keyed by other copies
    restored = pickling.loads(pickling.dumps(model_state))
    assert [a is b for a, b in zip(restored, got[7][0].x)] == [True, True]
