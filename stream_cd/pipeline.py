"""The pipeline: raw message bytes in; decisions, dead letters and predictions out.

Transport-free: the worker loop hands it each message's bytes and takes back
an :class:`Outcome`. One :class:`~stream_cd.slot.ModelSlot` per model key.

>>> p = Pipeline(PipelineConfig(model="logreg", drift="none"))
>>> p.process(b'{"key": "a", "x": {"f": 1.0}, "y": true}', ts=0).invalid
>>> p.process(b'{"key": "a", "x": "oops", "y": true}', ts=0).invalid
'x is a string; it must be an object of features'
>>> p.process(b'{"key": "a", "x": {"f": 2.0}}', ts=0).prediction
True
>>> p.summary()["events"], p.summary()["invalid"], p.summary()["models"]["a"]["learned"]
(3, 1, 1)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stream_cd.config import PipelineConfig
from stream_cd.decisions import Decision
from stream_cd.errors import InvalidEvent
from stream_cd.events import Event, decode_event
from stream_cd.slot import ModelSlot

__all__ = ["Outcome", "Pipeline"]


@dataclass(slots=True)
class Outcome:
    """What one message produced. ``invalid`` is the reason when it was rejected."""

    event: Event | None = None
    decisions: list[Decision] = field(default_factory=list)
    prediction: Any = None
    version: str | None = None
    invalid: str | None = None


_NO_DECISIONS: list[Decision] = []


class Pipeline:
    """Validates events and routes them to their model key's slot."""

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.slots: dict[str, ModelSlot] = {}
        self.events = 0
        self.invalid = 0
        self.invalid_reasons: Counter[str] = Counter()

    def slot(self, key: str) -> ModelSlot:
        """The slot of a model key, created on its first event."""
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = ModelSlot(key, self.config)
        return slot

    def process(self, raw: bytes, ts: int) -> Outcome:
        """Handle one message; ``ts`` is the message time, used when the event has none."""
        self.events += 1
        try:
            event = decode_event(raw, self.config.max_event_bytes)
            return self.handle(event, ts)
        except InvalidEvent as err:
            return self._reject(err.reason)

    def handle(self, event: Event, ts: int) -> Outcome:
        """Learn from a labeled event or serve a prediction request."""
        slot = self.slot(event.key)
        if event.ts is not None:
            ts = event.ts
        if event.y is None:
            return Outcome(event, _NO_DECISIONS, slot.predict(event.x), slot.champion_version)
        version = slot.champion_version
        decisions = slot.learn(event.x, event.y, ts)
        return Outcome(event, decisions, None, version)

    def _reject(self, reason: str) -> Outcome:
        self.invalid += 1
        self.invalid_reasons[reason.split(";")[0].split(":")[0]] += 1
        return Outcome(invalid=reason)

    def summary(self) -> dict[str, Any]:
        """The run summary of the design notes (without the outer ``summary`` key)."""
        return {
            "events": self.events,
            "invalid": self.invalid,
            "models": {key: slot.summary() for key, slot in sorted(self.slots.items())},
        }
