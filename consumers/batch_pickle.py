"""Pickling decoded batches from the fetch process to the worker, with shared strings.

Every event of a stream repeats the same feature names and model keys. Pickled
plainly, each batch would bring its own copies of them, and River's models, which
keep their state in dicts keyed by feature name, would then compare each copy
with the key they hold character by character, on every lookup, where the same
object compares at once. On a logreg champion and shadow that is about 1 µs per
event, a twentieth of their time.

So both ends keep a table of the strings sent so far. The fetch process sends
each new string once, as it first meets it; from then on a batch refers to the
worker's copy by its place in the table, which also makes the batch smaller.
The worker's copies are interned (``sys.intern``), as are the strings of
restored model state (:mod:`stream_cd.state.pickling`): a model restored from a
checkpoint holds the very names the batches bring.

>>> from stream_cd.events import decode_event
>>> pickler, unpickler = BatchPickler(), BatchUnpickler()
>>> def cross(*raws):
...     events = [decode_event(raw) for raw in raws]
...     strings = pickler.share(events)
...     if strings is not None:
...         unpickler.add(strings)
...     return unpickler.loads(pickler.dumps(events))
>>> first, = cross(b'{"key": "k", "x": {"salary": 1.5}}')
>>> second, third = cross(b'{"key": "k", "x": {"salary": 2.5}}', b'{"key": "k", "x": {"age": 3}}')
>>> second.x, second.key, third.x
({'salary': 2.5}, 'k', {'age': 3})
>>> [name is next(iter(first.x)) for name in second.x], second.key is first.key is third.key
([True], True)
>>> import sys
>>> sys.intern("".join(["sal", "ary"])) is next(iter(second.x))
True

Both tables must stay the same: the fetch process sends every new string, in
order, through the same pipe as the batches and before the first batch that
refers to it. Past ``limit`` strings, new ones are no longer shared but sent in
full with every batch.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from typing import Any

from stream_cd.events import Event

__all__ = ["BatchPickler", "BatchUnpickler", "MAX_SHARED_STRINGS"]

MAX_SHARED_STRINGS = 10_000  # the table is copied into every batch's (un)pickler: keep it small
# Protocol 3 numbers every object it keeps for later references explicitly. From protocol
# 4 on, the unpickler numbers them itself by counting, and an unpickler given a copied
# memo (CPython 3.11) counts from the wrong place.
PROTOCOL = 3
READ_BUFFER = 1 << 16


class BatchPickler:
    """The fetch process's end: shares the model keys and feature names of the events it
    sends, and pickles batches that refer to them.

    The table is the memo each batch's pickler starts from: string ``i`` is kept there
    as number ``i``, so the pickler writes a reference for it.
    """

    def __init__(self, limit: int = MAX_SHARED_STRINGS) -> None:
        self.limit = limit
        self._known: dict[str, str] = {}  # each string shared, by its text: the object numbered
        self._ids: set[int] = set()  # ids of those objects
        self._memo: dict[int, tuple[int, str]] = {}  # id of that object -> (its number, it)

    def share(self, events: list) -> list[str] | None:
        """Add the model keys and feature names of ``events`` to the table and point each
        event at the shared objects; return the new strings, in order, for
        :meth:`BatchUnpickler.add`, or None when there are none.

        orjson hands back the same object for a feature name it has cached, which is
        usually the shared one already; a name it does not cache (one of a colliding
        pair, or longer than 64 bytes) comes as a new object each time, and the event's
        features are then rebuilt around the shared objects.
        """
        known, ids, new = self._known, self._ids, []
        for event in events:
            if type(event) is not Event:
                continue
            key = known.get(event.key)
            if key is None:
                key = self._add(event.key, new)
            event.key = key
            x = event.x
            if x is not None and not ids.issuperset(map(id, x)):  # None: a feedback, no features
                for name in x:
                    if name not in known:
                        self._add(name, new)
                event.x = {known.get(name, name): value for name, value in x.items()}
        return new or None

    def _add(self, text: str, new: list[str]) -> str:
        if len(self._known) >= self.limit:
            return text  # the table is full: sent in full from now on
        self._known[text] = text
        self._ids.add(id(text))
        self._memo[id(text)] = (len(self._memo), text)
        new.append(text)
        return text

    def dumps(self, obj: Any) -> bytes:
        """``obj`` pickled, with every shared string it holds as a reference."""
        out = io.BytesIO()
        pickler = pickle.Pickler(out, protocol=PROTOCOL)
        pickler.memo = self._memo  # a copy: what this batch adds stays out of the table
        pickler.dump(obj)
        return out.getvalue()


class BatchUnpickler:
    """The worker's end: the same table, as the memo of an unpickler, holding interned copies."""

    def __init__(self) -> None:
        self._stream = io.BytesIO()
        self._table = _Table(self._stream)
        self._size = 0

    def add(self, strings: list[str]) -> None:
        """Take in the new strings of :meth:`BatchPickler.share`, in the order they came."""
        stream = self._stream
        stream.seek(0)
        stream.truncate()
        stream.write(_numbering(self._size, strings))
        stream.seek(0)
        self._table.load()
        self._size += len(strings)

    def loads(self, blob: bytes) -> Any:
        """Unpickle a batch from :meth:`BatchPickler.dumps`."""
        # read through a buffer: from a bare BytesIO the unpickler would call its read()
        # for every object, which takes four times as long as the unpickling itself
        unpickler = pickle.Unpickler(io.BufferedReader(io.BytesIO(blob), READ_BUFFER))
        unpickler.memo = self._table.memo  # a copy, as on the pickler's side
        return unpickler.load()


class _Table(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> str:
        return sys.intern(pid)


def _numbering(first: int, strings: list[str]) -> bytes:
    """A pickle that keeps the interned copy of each string in the unpickler's memo, as
    numbers ``first``, ``first + 1``, ...: the text, made a persistent reference (which
    :class:`_Table` interns), stored under its number. (An unpickler's memo cannot be
    set from a dict in CPython 3.11: the entries go to the memo being replaced.)"""
    program = [pickle.PROTO, bytes([PROTOCOL])]
    for number, text in enumerate(strings, first):
        data = text.encode("utf-8", "surrogatepass")
        program += [pickle.BINUNICODE, struct.pack("<I", len(data)), data, pickle.BINPERSID,
                    pickle.LONG_BINPUT, struct.pack("<I", number), pickle.POP]
    program += [pickle.NONE, pickle.STOP]
    return b"".join(program)
