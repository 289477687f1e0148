"""The pipeline: raw message bytes in; decisions, dead letters and predictions out.

Transport-free: the worker loop hands it each message's bytes with its
partition and offset, and takes back an :class:`Outcome`. One
:class:`~stream_cd.model_key.ModelKey` per model key; one :class:`PartitionState`
per source partition, with the partition's counts and next offset.

Offsets make processing idempotent: a message at an offset a model key (or
partition) has already taken in is skipped, so replaying from an older
checkpoint never learns an event twice.

>>> p = Pipeline(PipelineConfig(model="logreg", drift="none"))
>>> p.process(b'{"key": "a", "x": {"f": 1.0}, "y": true}', ts=0, offset=0).invalid
>>> p.process(b'{"key": "a", "x": "oops", "y": true}', ts=0, offset=1).invalid
'x is a string; it must be an object of features'
>>> p.process(b'{"key": "a", "x": {"f": 2.0}}', ts=0, offset=2).prediction
True
>>> p.process(b'{"key": "a", "x": {"f": 3.0}, "y": true}', ts=0, offset=0).skipped
True
>>> p.summary()["events"], p.summary()["invalid"], p.summary()["models"]["a"]["learned"]
(3, 1, 1)
>>> sorted(key for key, _, _ in p.take_checkpoints())
['model:a', 'partition:0']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from dataclasses import dataclass, field
from typing import Any

from stream_cd.config import PipelineConfig
from stream_cd.decisions import Decision
from stream_cd.errors import InvalidEvent, StateError
from stream_cd.events import Clicks, Control, Event, RankingRequest, decode_event
from stream_cd.model_key import ModelKey

__all__ = ["Outcome", "PartitionState", "Pipeline", "learned", "record_key", "model_key_of_record"]

_MODEL_PREFIX = "model:"
_PARTITION_PREFIX = "partition:"


def record_key(model_key: str | None = None, partition: int | None = None) -> str:
    """The state-store key of a model key's record or of a partition's record; the two
    namespaces never meet, whatever a model key is called.

    >>> record_key("shop"), record_key("partition:0"), record_key(partition=3)
    ('model:shop', 'model:partition:0', 'partition:3')
    """
    return f"{_MODEL_PREFIX}{model_key}" if partition is None else f"{_PARTITION_PREFIX}{partition}"


def model_key_of_record(key: str) -> str | None:
    """The model key a state-store key names, or None for a partition record.

    >>> model_key_of_record("model:partition:0"), model_key_of_record("partition:0")
    ('partition:0', None)
    """
    return key[len(_MODEL_PREFIX) :] if key.startswith(_MODEL_PREFIX) else None


@dataclass(slots=True)
class Outcome:
    """What one message produced. ``invalid`` is the reason when it was rejected."""

    event: Event | None = None
    decisions: list[Decision] = field(default_factory=list)
    prediction: Any = None
    version: str | None = None
    invalid: str | None = None
    skipped: bool = False
    served: dict[str, Any] | None = None  # the served-prediction record, when asked for


def learned(outcome: Outcome) -> bool:
    """Whether the message of ``outcome`` brought a label that was taken in: a labeled event
    or a feedback, valid and not skipped (a poisoning guard may still have held it back).

    >>> p = Pipeline(PipelineConfig(model="logreg", drift="none"))
    >>> [learned(p.process(raw, ts=0)) for raw in (b'{"x": {"f": 1.0}, "y": true}', b'{"x": {"f": 1.0}}', b'[]')]
    [True, False, False]
    """
    if outcome is _NOTHING:
        return True
    event = outcome.event
    return type(event) is Event and event.y is not None and outcome.invalid is None and not outcome.skipped  # type: ignore[union-attr]


@dataclass
class PartitionState:
    """Counts of one source partition and the next offset it will take in."""

    next_offset: int = 0
    events: int = 0
    invalid: int = 0


_SKIPPED = Outcome(skipped=True)
_NOTHING = Outcome()  # shared, never changed: a labeled event that decided nothing


class Pipeline:
    """Validates events and routes them to their model key."""

    def __init__(self, config: PipelineConfig | None = None, record_predictions: bool = False) -> None:
        self.config = config or PipelineConfig()
        self.record_predictions = record_predictions
        self.models: dict[str, ModelKey] = {}
        self.partitions: dict[int, PartitionState] = {}
        self._dirty_keys: set[str] = set()
        self._dirty_partitions: set[int] = set()

    # -- processing ------------------------------------------------------------

    def model(self, key: str) -> ModelKey:
        """The state of a model key, created on its first event."""
        model = self.models.get(key)
        if model is None:
            model = self.models[key] = ModelKey(key, self.config)
        return model

    def process(self, raw: bytes | None, ts: int, partition: int = 0, offset: int | None = None) -> Outcome:
        """Handle one message; ``ts`` is the message time, used when the event has none.

        Without an ``offset`` (a source that has none) nothing is ever skipped.
        """
        try:
            event: Event | InvalidEvent = decode_event(raw, self.config.max_event_bytes)  # type: ignore[arg-type]
        except InvalidEvent as err:
            event = err
        return self.take(event, ts, partition, offset)

    def take(self, event: Event | InvalidEvent, ts: int, partition: int = 0, offset: int | None = None) -> Outcome:
        """Handle one message decoded elsewhere: its event, or why it is not one.

        >>> p = Pipeline(PipelineConfig(model="logreg", drift="none"))
        >>> p.take(InvalidEvent("x is missing"), ts=0, offset=0).invalid
        'x is missing'
        >>> p.take(decode_event(b'{"x": {"f": 1.0}, "y": true}'), ts=0, offset=1).decisions
        []
        >>> p.take(decode_event(b'{"id": "r9", "y": true}'), ts=0, offset=2).invalid
        "feedback for request 'r9': no such request is waiting for feedback (never served here, or its id is wrong)"
        """
        part = self.partitions.get(partition)
        if part is None:
            part = self.partitions[partition] = PartitionState()
        if offset is None:
            offset = part.next_offset
        elif offset < part.next_offset:
            return self._replayed(event, ts, partition, offset)
        part.next_offset = offset + 1
        part.events += 1
        self._dirty_partitions.add(partition)
        if type(event) is InvalidEvent:
            part.invalid += 1
            return Outcome(invalid=event.reason)
        try:
            return self._at_offset(self.models.get(event.key) or self.model(event.key), event, ts, partition, offset)  # type: ignore[union-attr,arg-type]
        except InvalidEvent as err:
            part.invalid += 1
            return Outcome(invalid=err.reason)

    def take_batch(
        self,
        events: Sequence[Event | InvalidEvent],
        timestamps: Sequence[int],
        offsets: Sequence[int],
        partition: int = 0,
        every: bool = False,
    ) -> list[tuple[int, Outcome]]:
        """:meth:`take` on consecutive messages of one partition, decoded elsewhere; return
        ``(index, outcome)`` of those that led to something (a rejection, decisions or a
        served prediction), or of all of them with ``every``.

        >>> p = Pipeline(PipelineConfig(model="logreg", drift="none", version_every=2))
        >>> events = [decode_event(b'{"x": {"f": 1.0}, "y": true}'), InvalidEvent("x is missing"),
        ...           decode_event(b'{"x": {"f": 2.0}, "y": false}')]
        >>> [(i, o.invalid or o.decisions[0].action) for i, o in p.take_batch(events, [0, 0, 0], [0, 1, 2])]
        [(1, 'x is missing'), (2, 'checkpoint')]
        >>> p.take_batch(events, [0, 0, 0], [0, 1, 2]), p.summary()["events"]
        ([], 3)
        """
        take = self.take
        results: list[tuple[int, Outcome]] = []
        for i, outcome in enumerate(map(take, events, timestamps, repeat(partition), offsets)):
            if every or outcome.invalid is not None or outcome.decisions or outcome.served is not None:
                results.append((i, outcome))
        return results

    def _replayed(self, event: Event | InvalidEvent, ts: int, partition: int, offset: int) -> Outcome:
        """A message before the partition's position: only a key restored from an older state takes it."""
        if type(event) is InvalidEvent:
            return _SKIPPED
        model = self.models.get(event.key)  # type: ignore[union-attr]
        if model is None:
            return _SKIPPED
        try:
            return self._at_offset(model, event, ts, partition, offset)  # type: ignore[arg-type]
        except InvalidEvent:
            return _SKIPPED

    def _at_offset(self, model: ModelKey, event: Event, ts: int, partition: int, offset: int) -> Outcome:
        """Serve the event unless its model key has already taken in this offset."""
        offsets = model.offsets
        if offset < offsets.get(partition, 0):
            return _SKIPPED
        offsets[partition] = offset + 1
        model.position = (partition, offset)
        return self._handle(model, event, ts)

    def handle(self, event: Event, ts: int) -> Outcome:
        """Learn from (or serve) an already decoded event that comes from no partition."""
        model = self.model(event.key)
        model.position = None
        return self._handle(model, event, ts)

    def _handle(self, model: ModelKey, event: Event, ts: int) -> Outcome:
        """The event's verb: a labeled event is learned, a request served, a feedback joined."""
        self._dirty_keys.add(event.key)
        if event.ts is not None:
            ts = event.ts
        version = model.champion.label
        if type(event) is not Event:
            return self._handle_other(model, event, ts, version)
        if event.y is None:
            exposure, decisions = model.serve(event.x, ts, event.id, event.session, event.source, event.numeric)  # type: ignore[arg-type]
            outcome = Outcome(event, decisions, exposure.served, version)
            if self.record_predictions:
                outcome.served = model.served_record(exposure, event.id, ts)
            return outcome
        if event.x is None:
            decisions = model.feedback(event.id, event.y, ts)  # type: ignore[arg-type]
        else:
            decisions = model.learn(event.x, event.y, ts, event.source, event.session, event.numeric, event.id)
            if self.record_predictions and model.last_served is not None:
                outcome = Outcome(event, decisions, None, version)
                outcome.served = record = model.served_record(model.last_served, event.id, ts)
                record["y"] = event.y
                model.last_served = None
                return outcome
        return Outcome(event, decisions, None, version) if decisions else _NOTHING

    def _handle_other(self, model: ModelKey, event: Control | RankingRequest | Clicks, ts: int, version: str) -> Outcome:
        """A control message, a ranking request (its served list is the prediction) or its clicks."""
        if type(event) is Control:
            return Outcome(event, model.control(event.action, event.experiment, ts), None, version)  # type: ignore[arg-type]
        if type(event) is Clicks:
            decisions = model.feedback(event.id, event.clicked, ts)
            return Outcome(event, decisions, None, version) if decisions else _NOTHING  # type: ignore[arg-type]
        exposure, decisions = model.serve(event.x, ts, event.id, event.session, event.source, event.numeric, event)  # type: ignore[arg-type]
        outcome = Outcome(event, decisions, list(exposure.served), version)  # type: ignore[arg-type]
        if self.record_predictions:
            outcome.served = model.served_record(exposure, event.id, ts)
        return outcome

    # -- state -------------------------------------------------------------------

    def take_checkpoints(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        """The state records changed since the last call, as (store key, state, source
        partitions it covers); the changes are then forgotten."""
        records: list[tuple[str, Any, tuple[int, ...]]] = [
            (record_key(key), self.models[key], tuple(sorted(self.models[key].offsets)))
            for key in sorted(self._dirty_keys)
            if key in self.models
        ]
        records += [(record_key(partition=p), self.partitions[p], (p,)) for p in sorted(self._dirty_partitions)]
        self._dirty_keys.clear()
        self._dirty_partitions.clear()
        return records

    def restore(self, key: str, state: Any) -> None:
        """Put back a state record read from a checkpoint under its store key."""
        model_key = model_key_of_record(key)
        if model_key is not None and isinstance(state, ModelKey) and state.key == model_key:
            self.models[model_key] = state
        elif key.startswith(_PARTITION_PREFIX) and isinstance(state, PartitionState):
            self.partitions[int(key[len(_PARTITION_PREFIX) :])] = state
        else:
            raise StateError(f"checkpoint {key!r} holds {type(state).__name__}, which does not belong under that key")

    def reset(self) -> None:
        """Forget all state (it is restored from the last checkpoints)."""
        self.models.clear()
        self.partitions.clear()
        self._dirty_keys.clear()
        self._dirty_partitions.clear()

    def forget_positions(self) -> None:
        """Take in again messages already processed (an at-least-once redelivery)."""
        for state in self.partitions.values():
            state.next_offset = 0
        for model in self.models.values():
            model.offsets.clear()

    def release(self, partitions: Iterable[int]) -> list[str]:
        """Forget the state of partitions given up, and of the keys that came only through them."""
        gone = set(partitions)
        for p in gone:
            self.partitions.pop(p, None)
            self._dirty_partitions.discard(p)
        dropped = [key for key, model in self.models.items() if model.offsets and set(model.offsets) <= gone]
        for key in dropped:
            del self.models[key]
            self._dirty_keys.discard(key)
        return dropped

    # -- reporting ---------------------------------------------------------------

    @property
    def events(self) -> int:
        return sum(p.events for p in self.partitions.values())

    @property
    def invalid(self) -> int:
        return sum(p.invalid for p in self.partitions.values())

    def summary(self) -> dict[str, Any]:
        """The run summary of the design notes (without the outer ``summary`` key)."""
        return {
            "events": self.events,
            "invalid": self.invalid,
            "models": {key: model.summary() for key, model in sorted(self.models.items())},
        }
