"""Event decoding and validation (issue 3, item 1)."""

from __future__ import annotations

import orjson
import pytest

from stream_cd.errors import InvalidEvent, StreamCDError
from stream_cd.events import DEFAULT_KEY, DEFAULT_MAX_EVENT_BYTES, Event, decode_event, encode_event
from stream_cd.learning.tasks import check_label, infer_task, loss_of


def reason_of(raw: bytes, **kwargs) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, **kwargs)
    assert isinstance(info.value, StreamCDError)
    assert info.value.reason == str(info.value)
    return info.value.reason


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        # undecodable bytes
        (b"\xff\xfe\x00garbage", ["not valid JSON"]),
        (b"not json", ["not valid JSON"]),
        (b'{"x": {"a": 1}', ["not valid JSON"]),
        (b"", ["not valid JSON"]),
        # NaN / Infinity literals and out-of-range numbers cannot arrive as floats
        (b'{"x": {"a": NaN}}', ["not valid JSON"]),
        (b'{"x": {"a": Infinity}}', ["not valid JSON"]),
        (b'{"x": {"a": 1e999}}', ["not valid JSON", "infinity"]),
        (b'{"x": {"a": -1e999}}', ["not valid JSON", "infinity"]),
        (b'{"x": {"a": 1}, "y": 1e999}', ["not valid JSON", "infinity"]),
        # not an object
        (b"[1, 2]", ["event is a list", "JSON object"]),
        (b'"text"', ["event is a string"]),
        (b"42", ["event is a number"]),
        (b"null", ["event is null"]),
        (b"true", ["event is a boolean"]),
        # x missing or not an object
        (b'{"y": true}', ["feedback", "needs the id"]),
        (b'{"key": "k"}', ["x is missing"]),
        (b'{"x": [1, 2], "y": true}', ["x is a list", "object of features"]),
        (b'{"x": "a=1", "y": true}', ["x is a string"]),
        (b'{"x": 3, "y": true}', ["x is a number"]),
        (b'{"x": null, "y": true}', ["x is null"]),
        # nested or null features
        (b'{"x": {"a": [1, 2]}}', ["feature 'a' is a list"]),
        (b'{"x": {"ok": 1, "b": {"c": 1}}}', ["feature 'b' is an object"]),
        (b'{"x": {"n": null}}', ["feature 'n' is null"]),
        # label not a scalar
        (b'{"x": {"a": 1}, "y": [true]}', ["label y is a list"]),
        (b'{"x": {"a": 1}, "y": {"v": 1}}', ["label y is an object"]),
        # key / ts / id / session / source of the wrong type
        (b'{"key": 5, "x": {}}', ["key is 5", "non-empty string"]),
        (b'{"key": "", "x": {}}', ["key is ''"]),
        (b'{"key": null, "x": {}}', ["key is None"]),
        (b'{"key": ["a"], "x": {}}', ["key is ['a']"]),
        (b'{"ts": "yesterday", "x": {}}', ["ts is 'yesterday'", "epoch milliseconds"]),
        (b'{"ts": 1.5, "x": {}}', ["ts is 1.5"]),
        (b'{"ts": -1, "x": {}}', ["ts is -1"]),
        (b'{"ts": 1732600000000000, "x": {}}', ["ts is 1732600000000000", "microseconds"]),
        (b'{"ts": true, "x": {}}', ["ts is True"]),
        (b'{"id": [1], "x": {}}', ["id is a list"]),
        (b'{"id": 1.5, "x": {}}', ["id is a number"]),
        (b'{"session": {"a": 1}, "x": {}}', ["session is an object"]),
        (b'{"user": [1], "x": {}}', ["user is a list"]),
        (b'{"source": true, "x": {}}', ["source is a boolean"]),
    ],
)
def test_invalid_event_is_rejected_with_a_reason_naming_the_problem(raw: bytes, words: list[str]) -> None:
    reason = reason_of(raw)
    for word in words:
        assert word in reason, (word, reason)


def test_none_value_is_rejected() -> None:
    assert "no value" in reason_of(None)  # type: ignore[arg-type]


def test_the_decoder_never_yields_a_non_finite_float() -> None:
    # decode_event checks feature and label kinds without a per-value finiteness test,
    # because orjson refuses every spelling of a non-finite number; pin that here so an
    # orjson that stopped doing so fails this test rather than letting inf into a model.
    for text in (b"1e999", b"-1e999", b"1e400", b"NaN", b"nan", b"Infinity", b"-Infinity", b"inf"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(b'{"x": {"a": %s}}' % text)
    assert orjson.loads(b"1.7976931348623157e308") == 1.7976931348623157e308  # the largest double is fine


def test_oversize_message_is_rejected_before_decoding() -> None:
    raw = orjson.dumps({"x": {"f": "a" * 100}, "y": True})
    assert decode_event(raw, max_bytes=len(raw)).y is True  # at the limit: fine
    reason = reason_of(raw, max_bytes=len(raw) - 1)
    assert f"event is {len(raw)} bytes" in reason and f"limit of {len(raw) - 1} bytes" in reason
    # oversize wins even over garbage: the size is checked first
    assert "over the limit" in reason_of(b"\xff" * 20, max_bytes=10)
    # the default limit applies without an argument
    big = orjson.dumps({"x": {"f": "a" * DEFAULT_MAX_EVENT_BYTES}})
    assert "over the limit" in reason_of(big)


def test_valid_event_with_every_kind_of_feature() -> None:
    raw = b'{"key": "shop", "id": "e1", "ts": 1732600000000, "x": {"i": 3, "f": -1.5, "s": "red", "b": false, "e": 0}, "y": "cat"}'
    ev = decode_event(raw)
    assert ev == Event(key="shop", x={"i": 3, "f": -1.5, "s": "red", "b": False, "e": 0}, y="cat", id="e1", ts=1732600000000)
    assert ev.labeled
    assert type(ev.x["i"]) is int and type(ev.x["f"]) is float and type(ev.x["b"]) is bool


def test_defaults_and_prediction_request() -> None:
    ev = decode_event(b'{"x": {}}')
    assert ev.key == DEFAULT_KEY == "default"
    assert ev.y is None and not ev.labeled
    assert ev.id is None and ev.ts is None and ev.session is None
    # y null is a prediction request too; y false is a label
    assert not decode_event(b'{"x": {"a": 1}, "y": null}').labeled
    assert decode_event(b'{"x": {"a": 1}, "y": false}').labeled


@pytest.mark.parametrize("y", [True, False, "spam", 0, 7, 2.5, -3.25])
def test_scalar_labels_are_accepted(y) -> None:
    assert decode_event(orjson.dumps({"x": {"a": 1}, "y": y})).y == y


def test_user_is_an_alias_of_session_and_ids_may_be_numbers() -> None:
    assert decode_event(b'{"x": {}, "user": "u-7"}').session == "u-7"
    assert decode_event(b'{"x": {}, "session": "s-1"}').session == "s-1"
    assert decode_event(b'{"x": {}, "user": 42}').session == "42"
    assert decode_event(b'{"x": {}, "id": 17}').id == "17"
    assert decode_event(b'{"x": {}, "source": "web"}').source == "web"


def test_encode_decode_round_trip() -> None:
    ev = Event(key="k", x={"a": 1, "b": 2.5, "c": "z", "d": True}, y=False, id="1", ts=5, session="s")
    assert decode_event(encode_event(ev)) == ev
    assert b'"y"' not in encode_event(Event(key="k", x={}))


# -- labels of the wrong kind for the task (tasks.check_label) -----------------


@pytest.mark.parametrize("y", [0.5, -2.25, 1.0])
def test_classification_rejects_fractional_numbers(y) -> None:
    with pytest.raises(InvalidEvent) as info:
        check_label("classification", y)
    assert "classification task needs a class" in info.value.reason and repr(y) in info.value.reason


@pytest.mark.parametrize(("y", "kind"), [(True, "a boolean"), (False, "a boolean"), ("cat", "a string")])
def test_regression_rejects_booleans_and_strings(y, kind) -> None:
    with pytest.raises(InvalidEvent) as info:
        check_label("regression", y)
    assert kind in info.value.reason and "regression task needs a number" in info.value.reason


def test_labels_that_fit_the_task_pass_unchanged() -> None:
    for y in (True, "cat", 3):
        assert check_label("classification", y) == y
    for y in (2.5, 3, -1.0):
        assert check_label("regression", y) == y


def test_infer_task_and_loss() -> None:
    assert [infer_task(y) for y in (True, "a", 3, 2.5)] == ["classification"] * 3 + ["regression"]
    assert loss_of("classification", True, True) == 0.0
    assert loss_of("classification", True, None) == 1.0
    assert loss_of("regression", 3.0, None) == 3.0
    assert loss_of("regression", -2.0, 1.0) == 3.0


def test_the_decoder_notes_whether_every_feature_is_a_number() -> None:
    import pickle

    assert decode_event(b'{"x": {"a": 1, "b": 2.5}}').numeric is True
    assert decode_event(b'{"x": {}}').numeric is True
    for x in (b'{"a": 1, "b": "red"}', b'{"a": 1, "b": true}'):
        assert decode_event(b'{"x": ' + x + b"}").numeric is False
    assert Event(key="k", x={"a": 1}).numeric is False  # made by hand: not known
    ev = decode_event(b'{"x": {"a": 1}, "y": true}')
    assert pickle.loads(pickle.dumps(ev)).numeric is True and ev == Event(key="default", x={"a": 1}, y=True)
