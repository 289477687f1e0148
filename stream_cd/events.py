"""Events: decoding and validating the JSON objects that feed the models.

An event is one JSON object (see the design notes)::

    {"key": "default", "id": "e1", "ts": 1732600000000,
     "x": {"feature": 1.5, "colour": "red"}, "y": true}

``y`` absent means a prediction request; ``x`` absent and ``y`` present is the
*feedback* for the earlier request with that ``id`` (the label that came later:
a click, a purchase, a fraud report). Feature values are finite numbers,
strings or booleans. Anything else raises :class:`~stream_cd.errors.InvalidEvent`
with a reason; the worker sends such messages to the dead-letter topic.

A *ranking request* carries candidates, and its feedback the ids of the ones
clicked (:class:`RankingRequest`, :class:`Clicks`)::

    {"key": "search", "id": "q1", "x": {...query...},
     "items": [{"id": "i1", "x": {...}}, {"id": "i2", "x": {...}}], "k": 10}
    {"key": "search", "id": "q1", "clicked": ["i2"]}

>>> ev = decode_event(b'{"key": "shop", "x": {"a": 1.5, "c": "red"}, "y": true}')
>>> ev.key, ev.x, ev.y, ev.labeled
('shop', {'a': 1.5, 'c': 'red'}, True, True)
>>> fb = decode_event(b'{"key": "shop", "id": "r1", "y": false}')
>>> fb.feedback, fb.x, fb.y
(True, None, False)
>>> decode_event(b'{"x": {"a": [1, 2]}}')
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: feature 'a' is a list; features must be finite numbers, strings or booleans
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_cd.errors import InvalidEvent

__all__ = ["Event", "Control", "RankingRequest", "Clicks", "decode_event", "encode_event", "DEFAULT_KEY",
           "DEFAULT_MAX_EVENT_BYTES"]

DEFAULT_KEY = "default"
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
# Event times after this (the year 5138) are refused: a timestamp in microseconds or nanoseconds
# would set a model key's clock centuries ahead, and every waiting request would expire at once.
MAX_TS_MS = 10**14
_MISSING = object()
_SCALARS = frozenset((str, bool, int, float))  # what a feature value or a label may be
_NUMBERS = frozenset((int, float))
_JSON_TYPE = {dict: "an object", list: "a list", type(None): "null", str: "a string",
              bool: "a boolean", int: "a number", float: "a number"}


@dataclass(slots=True)
class Event:
    """A decoded, valid event. ``y`` is None for a prediction request; ``x`` is None
    for the feedback of an earlier request (then ``id`` names it)."""

    key: str
    x: dict[str, float | str | bool] | None
    y: Any = None
    id: str | None = None
    ts: int | None = None
    session: str | None = None
    source: str | None = None
    # Every feature value is a number: the decoder has looked at each of them already,
    # and a model key's schema check then needs only their names. False: not known.
    numeric: bool = field(default=False, compare=False, repr=False)

    def __reduce__(self) -> tuple:
        # Pickled by its fields, which unpickles as fast as a tuple: decoded events
        # cross a process boundary in batches (see ``stream_cd.transport.DecodedBatch``).
        return Event, (self.key, self.x, self.y, self.id, self.ts, self.session, self.source, self.numeric)

    @property
    def feedback(self) -> bool:
        """Whether the event is the label of an earlier request (no features of its own)."""
        return self.x is None

    @property
    def labeled(self) -> bool:
        """Whether the event carries a label (and so is learned from)."""
        return self.y is not None

    def to_dict(self) -> dict[str, Any]:
        """The event as its JSON object, without empty fields."""
        out: dict[str, Any] = {"key": self.key}
        for name in ("id", "ts", "session", "source"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.x is not None:
            out["x"] = self.x
        if self.y is not None:
            out["y"] = self.y
        return out


@dataclass(slots=True)
class Control:
    """A control message of a model key's stream: ``start`` or ``stop`` an experiment
    (its definition is checked by the model key, which refuses it whole or applies it)."""

    key: str
    action: str
    experiment: dict[str, Any]
    ts: int | None = None

    def __reduce__(self) -> tuple:
        return Control, (self.key, self.action, self.experiment, self.ts)


CONTROL_ACTIONS = ("start", "stop")


@dataclass(slots=True)
class RankingRequest:
    """A request to rank candidates: the query's features ``x``, each candidate's id and
    features (``item_ids``, ``items``, in the order given) and ``k``, the length of the
    list to serve (at most the number of candidates). ``numeric``: every query and
    item feature is a number."""

    key: str
    x: dict[str, float | str | bool]
    item_ids: tuple[str, ...]
    items: list[dict[str, float | str | bool]]
    k: int
    id: str | None = None
    ts: int | None = None
    session: str | None = None
    source: str | None = None
    numeric: bool = field(default=False, compare=False, repr=False)

    def __reduce__(self) -> tuple:
        return RankingRequest, (self.key, self.x, self.item_ids, self.items, self.k, self.id, self.ts, self.session,
                                self.source, self.numeric)


@dataclass(slots=True)
class Clicks:
    """The feedback of a ranking request: the ids of the served items that were clicked
    (none: the list was shown and nothing was clicked)."""

    key: str
    id: str
    clicked: tuple[str, ...]
    ts: int | None = None

    def __reduce__(self) -> tuple:
        return Clicks, (self.key, self.id, self.clicked, self.ts)


def encode_event(event: Event) -> bytes:
    """Encode an event as compact JSON bytes.

    >>> encode_event(Event(key="k", x={"a": 1}, y=False))
    b'{"key":"k","x":{"a":1},"y":false}'
    """
    return orjson.dumps(event.to_dict())


def _kind(value: object) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _check_features(x: object) -> dict[str, float | str | bool]:
    if x is _MISSING:
        raise InvalidEvent("x is missing; an event needs an object of features in x")
    if not isinstance(x, dict):
        raise InvalidEvent(f"x is {_kind(x)}; it must be an object of features")
    for name, value in x.items():
        kind = type(value)
        if kind is str or kind is bool or kind is int:
            continue
        if kind is float:
            if not math.isfinite(value):
                raise InvalidEvent(f"feature {name!r} is {value}; features must be finite")
            continue
        raise InvalidEvent(
            f"feature {name!r} is {_kind(value)}; features must be finite numbers, strings or booleans"
        )
    return x


def _check_label(y: object) -> Any:
    if y is None or type(y) in (bool, str, int):
        return y
    if type(y) is float:
        if not math.isfinite(y):
            raise InvalidEvent(f"label y is {y}; labels must be finite")
        return y
    raise InvalidEvent(f"label y is {_kind(y)}; it must be a boolean, string or number")


def _optional_str(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise InvalidEvent(f"{name} is {_kind(value)}; it must be a string")


def decode_event(raw: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Event:
    """Decode and validate one event from its JSON bytes.

    Raises :class:`InvalidEvent` naming what is wrong: oversized or undecodable
    bytes, a value that is not an object, a missing or non-object ``x``, a
    nested, null or non-finite feature, a label that is not a scalar, a
    feedback (no ``x``, a ``y``) without the ``id`` of its request, or a key,
    id, session or source of the wrong type.

    >>> decode_event(b'[1]')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: event is a list; it must be a JSON object
    >>> decode_event(b'{"x": {}}', max_bytes=4)
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: event is 9 bytes, over the limit of 4 bytes
    >>> decode_event(b'{"x": {"a": 1e999}}')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: not valid JSON: number is infinity when parsed as double: line 1 column 13 (char 12)
    >>> decode_event(b'{"y": true}')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: feedback (y without x) needs the id of its request; this event has no id
    """
    if raw is None:
        raise InvalidEvent("message has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"event is {len(raw)} bytes, over the limit of {max_bytes} bytes")
    try:
        obj = orjson.loads(raw)  # refuses NaN and infinities, so every float below is finite
    except orjson.JSONDecodeError as err:
        raise InvalidEvent(f"not valid JSON: {err}") from None
    if type(obj) is not dict:
        raise InvalidEvent(f"event is {_kind(obj)}; it must be a JSON object")
    get = obj.get
    key = get("key", DEFAULT_KEY)
    if type(key) is not str or not key:
        raise InvalidEvent(f"key is {key!r}; it must be a non-empty string")
    ts = get("ts")
    if ts is not None and (type(ts) is not int or ts < 0):
        raise InvalidEvent(f"ts is {ts!r}; it must be epoch milliseconds as a whole number")
    if ts is not None and ts > MAX_TS_MS:
        raise InvalidEvent(f"ts is {ts!r}, after the year 5000 if it were epoch milliseconds; it must be epoch milliseconds "
                           f"(microseconds or nanoseconds divided by 1,000 or 1,000,000)")
    control = get("control")
    if control is not None:
        return _control(key, control, get("experiment"), ts)
    if "items" in obj:
        return _ranking_request(obj, key, ts)
    if "clicked" in obj:
        return _clicks(obj, key, ts)
    x = get("x", _MISSING)
    y = get("y")
    if y is not None and type(y) not in _SCALARS:
        y = _check_label(y)
    ident, session, source = get("id"), get("session"), get("source")
    if ident is not None and type(ident) is not str:
        ident = _optional_str(obj, "id")
    if x is _MISSING and y is not None:  # feedback for an earlier request
        if ident is None:
            raise InvalidEvent("feedback (y without x) needs the id of its request; this event has no id")
        x, numeric = None, False
    else:
        numeric = type(x) is dict and _NUMBERS.issuperset(map(type, x.values()))
        if not numeric and (type(x) is not dict or not _SCALARS.issuperset(map(type, x.values()))):
            x = _check_features(x)  # names the first bad feature
    if session is None or session == "":
        session = get("user")
    if session is not None and type(session) is not str:
        session = _optional_str(obj, "session") or _optional_str(obj, "user")
    if source is not None and type(source) is not str:
        source = _optional_str(obj, "source")
    return Event(key, x, y, ident, ts, session, source, numeric)


def _control(key: str, action: object, experiment: object, ts: int | None) -> Control:
    """A control message, checked in its shape (the definition itself is the model key's to check).

    >>> decode_event(b'{"key": "shop", "control": "stop", "experiment": {"name": "ab-7"}}')
    Control(key='shop', action='stop', experiment={'name': 'ab-7'}, ts=None)
    >>> decode_event(b'{"control": "pause", "experiment": {"name": "ab-7"}}')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: control 'pause' is not one of start, stop
    """
    if action not in CONTROL_ACTIONS:
        raise InvalidEvent(f"control {action!r} is not one of {', '.join(CONTROL_ACTIONS)}")
    if type(experiment) is not dict or type(experiment.get("name")) is not str:
        raise InvalidEvent(f"control {action!r} needs an experiment object with a name, not {experiment!r}")
    return Control(key, action, experiment, ts)


def _ranking_request(obj: dict, key: str, ts: int | None) -> RankingRequest:
    """A ranking request, checked: a list of candidates each with a distinct id and an object of
    features, an optional ``x`` of query features (default: none), and ``k`` (default: all).

    >>> r = decode_event(b'{"key": "s", "id": "q1", "x": {"f0": 0.5}, "items": [{"id": "a", "x": {"f0": 1}},'
    ...                  b' {"id": "b", "x": {"f0": -1}}], "k": 1}')
    >>> r.item_ids, r.items, r.k, r.numeric
    (('a', 'b'), [{'f0': 1}, {'f0': -1}], 1, True)
    >>> decode_event(b'{"items": [{"id": "a", "x": {}}, {"id": "a", "x": {}}]}')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: items: id 'a' comes twice; the candidates of a ranking request need distinct ids
    >>> decode_event(b'{"items": [{"id": "a", "x": {}}], "k": 0}')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: k is 0; it must be a whole number of at least 1 (the length of the list to serve)
    """
    if "y" in obj or "clicked" in obj:
        raise InvalidEvent("a ranking request (items) has no y or clicked; its feedback is a separate event with "
                           "its id and clicked")
    items = obj["items"]
    if type(items) is not list or not items:
        raise InvalidEvent(f"items is {_kind(items)}{'' if items else ' (empty)'}; it must be a non-empty list of "
                           '{"id": ..., "x": {...}} candidates')
    ids: list[str] = []
    xs: list[dict] = []
    numeric = True
    for n, item in enumerate(items):
        if type(item) is not dict or "x" not in item or item.get("id") is None:
            raise InvalidEvent(f'items[{n}] is {_kind(item) if type(item) is not dict else "an object without id or x"}'
                               '; each candidate is {"id": ..., "x": {...}}')
        try:
            ident = item["id"] if type(item["id"]) is str else _optional_str(item, "id")
            x = _check_features(item["x"])
        except InvalidEvent as err:
            raise InvalidEvent(f"items[{n}]: {err.reason}") from None
        numeric = numeric and _NUMBERS.issuperset(map(type, x.values()))
        ids.append(ident)  # type: ignore[arg-type]
        xs.append(x)
    if len(set(ids)) != len(ids):
        twice = next(i for n, i in enumerate(ids) if i in ids[:n])
        raise InvalidEvent(f"items: id {twice!r} comes twice; the candidates of a ranking request need distinct ids")
    k = obj.get("k", len(ids))
    if type(k) is not int or k < 1:
        raise InvalidEvent(f"k is {k!r}; it must be a whole number of at least 1 (the length of the list to serve)")
    query = _check_features(obj.get("x", {}))
    numeric = numeric and _NUMBERS.issuperset(map(type, query.values()))
    session = _optional_str(obj, "session") or _optional_str(obj, "user")
    return RankingRequest(key, query, tuple(ids), xs, min(k, len(ids)), _optional_str(obj, "id"), ts, session,
                          _optional_str(obj, "source"), numeric)


def _clicks(obj: dict, key: str, ts: int | None) -> Clicks:
    """The clicks of a ranking request, checked: the request's id and a list of distinct item ids.

    >>> decode_event(b'{"key": "s", "id": "q1", "clicked": ["b"]}')
    Clicks(key='s', id='q1', clicked=('b',), ts=None)
    >>> decode_event(b'{"id": "q1", "clicked": "b"}')
    Traceback (most recent call last):
    ...
    stream_cd.errors.InvalidEvent: clicked is a string; it must be a list of the ids of the clicked items (empty: none)
    """
    ident = _optional_str(obj, "id")
    if ident is None:
        raise InvalidEvent("clicks (clicked) need the id of their ranking request; this event has no id")
    if "x" in obj or "y" in obj:
        raise InvalidEvent("clicks (clicked) carry no x or y; they are the feedback of the ranking request with their id")
    clicked = obj["clicked"]
    if type(clicked) is not list:
        raise InvalidEvent(f"clicked is {_kind(clicked)}; it must be a list of the ids of the clicked items (empty: none)")
    ids = []
    for n, item in enumerate(clicked):
        if type(item) is int:
            item = str(item)
        if type(item) is not str:
            raise InvalidEvent(f"clicked[{n}] is {_kind(item)}; it must be the id of a served item")
        ids.append(item)
    if len(set(ids)) != len(ids):
        twice = next(i for n, i in enumerate(ids) if i in ids[:n])
        raise InvalidEvent(f"clicked: item {twice!r} comes twice; each clicked item is named once")
    return Clicks(key, ident, tuple(ids), ts)
