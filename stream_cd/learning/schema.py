"""The feature schema of a model key: each feature keeps the kind it first had.

Models fail on an event whose feature changed kind (a number where earlier
events had a string) part-way through learning, which would leave them changed
by an event that was rejected; the schema rejects such events before any model
sees them.

>>> schema = Schema("shop")
>>> schema.check({"price": 9.5, "colour": "red"})
>>> schema.check({"price": 12, "colour": "blue"})          # any number is a number
>>> schema.check({"price": "cheap"})
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: feature 'price' is 'cheap', a string, but earlier events of model key 'shop' had a number
"""

from __future__ import annotations

from stream_cd.errors import InvalidEvent

__all__ = ["Schema"]

_KIND_NAMES = {float: "a number", bool: "a boolean", str: "a string"}
_NUMBERS = frozenset((int, float))


class Schema:
    """Feature name -> kind (float for any number, bool, str) of one model key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.kinds: dict[str, type] = {}
        self.numeric: frozenset[str] = frozenset()  # features known as numbers

    def check(self, x: dict, numeric: bool = False) -> None:
        """Reject ``x`` if a feature changed kind; learn the kinds of new features.

        ``numeric``: the caller knows every value in ``x`` is a number (the decoder's
        :attr:`~stream_cd.events.Event.numeric`), so only the names need looking at.
        """
        if (numeric or _NUMBERS.issuperset(map(type, x.values()))) and self.numeric.issuperset(x):
            return  # the common case, checked in C: only numbers, all known as numbers
        kinds = self.kinds
        new = None
        for name, value in x.items():
            kind = type(value)
            if kind is int:
                kind = float
            known = kinds.get(name)
            if known is None:
                if new is None:
                    new = {}
                new[name] = kind
            elif known is not kind:
                raise InvalidEvent(
                    f"feature {name!r} is {value!r}, {_KIND_NAMES[kind]}, but earlier events of model key "
                    f"{self.key!r} had {_KIND_NAMES[known]}"
                )
        if new:
            kinds.update(new)  # only once the whole event is known to fit
            self.numeric = frozenset(name for name, kind in kinds.items() if kind is float)
