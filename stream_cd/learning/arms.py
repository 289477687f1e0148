"""Arms: a model with its name, spec, version and lineage.

An arm is what a router can send traffic to and an experiment can judge: the
champion, a shadow challenger, a variant of an A/B test. It wraps one River
model built from its spec; ``predict`` and ``learn`` turn a model's own
exception into an :class:`~stream_cd.errors.InvalidEvent` that names the arm,
so a model that cannot use an event never stops a worker.

>>> from stream_cd.learning.specs import ModelSpec
>>> from stream_cd.learning.versions import Version
>>> arm = Arm("champion", ModelSpec.parse("logreg"), Version(1))
>>> arm.learn({"f": 1.0}, True)
>>> arm.predict({"f": 1.0}), arm.label, arm.learned
(True, 'v1.0', 1)

Its ``recent`` losses, as its model key scores them, give the rolling metric:

>>> arm.recent.update(0.0); arm.recent.update(1.0)
>>> arm.recent.mean
0.5
>>> arm.learn({"f": "a"}, True)
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: arm 'champion' (logreg v1.0) cannot learn this event: TypeError("unsupported operand type(s) for -: 'str' and 'float'")
"""

from __future__ import annotations

from typing import Any

from stream_cd.errors import InvalidEvent
from stream_cd.learning.rolling import DEFAULT_WINDOW, RollingLoss
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.versions import Version

__all__ = ["Arm"]


class Arm:
    """A named model of one spec, with its version, how many events it learned and its
    recent losses (a :class:`~stream_cd.learning.rolling.RollingLoss` over ``window`` events)."""

    __slots__ = ("name", "spec", "model", "_version", "label", "learned", "recent")

    def __init__(self, name: str, spec: ModelSpec, version: Version, window: int = DEFAULT_WINDOW) -> None:
        self.name = name
        self.spec = spec
        self.model = spec.build()
        self.version = version
        self.learned = 0
        self.recent = RollingLoss(window)

    def __setstate__(self, state: tuple) -> None:
        """Restore a pickled arm; one pickled before arms kept their recent losses gets an empty record."""
        _, slots = state
        for name, value in slots.items():
            object.__setattr__(self, name, value)
        if "recent" not in slots:
            self.recent = RollingLoss()

    @property
    def version(self) -> Version:
        return self._version

    @version.setter
    def version(self, version: Version) -> None:
        self._version = version
        self.label = str(version)  # what every outcome reports, formatted once per version

    def __repr__(self) -> str:
        return f"Arm({self.name!r}, {self.spec.name!r}, {self.label})"

    def failure(self, doing: str, err: Exception) -> InvalidEvent:
        """The rejection of an event this arm's model failed on."""
        return InvalidEvent(f"arm {self.name!r} ({self.spec} {self.label}) cannot {doing} this event: {err!r}")

    def predict(self, x: dict) -> Any:
        try:
            return self.model.predict_one(x)
        except Exception as err:  # a model that cannot use this event must not stop the worker
            raise self.failure("predict", err) from None

    def predict_proba(self, x: dict) -> dict:
        try:
            return self.model.predict_proba_one(x)
        except Exception as err:
            raise self.failure("predict", err) from None

    def learn(self, x: dict, y: Any) -> None:
        try:
            self.model.learn_one(x, y)
        except Exception as err:
            raise self.failure("learn", err) from None
        self.learned += 1
