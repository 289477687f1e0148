"""The pipeline: raw message bytes in; decisions, dead letters and predictions out.

Transport-free: the worker loop hands it each message's bytes with its
partition and offset, and takes back an :class:`Outcome`. One
:class:`~stream_cd.model_key.ModelKey` per model key; one :class:`PartitionState`
per source partition, with the partition's counts and next offset.

Offsets make processing idempotent: a message at an offset a model key (or
partition) has already taken in is skipped, so replaying from an older
checkpoint never learns an event twice. A partition restored from an older
record than its last commit (the newest was refused) takes in the messages
up to that commit again, but quietly (its ``quiet_below``, which its later
records carry on): what they decided, served or rejected was committed when
they were first read.

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
>>> [(key, slot) for key, _, _, slot in p.take_snapshots(force=True) + p.take_partition_records()]
[('model:a', 0), ('partition:0', 0)]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import repeat
from dataclasses import dataclass, field, replace
from typing import Any

from stream_cd.config import PipelineConfig
from stream_cd.decisions import Decision
from stream_cd.errors import InvalidEvent, StateError
from stream_cd.events import Clicks, Control, Event, RankingRequest, decode_event
from stream_cd.model_key import ModelKey
from stream_cd.state.records import model_key_of_record, partition_of_record, record_key
from stream_cd.state.schedule import SnapshotSchedule

__all__ = ["Outcome", "PartitionState", "Pipeline", "StateRecord", "learned", "record_key", "model_key_of_record"]

StateRecord = tuple[str, Any, tuple[int, ...], int]  # (record key, state, source partitions, ring slot)

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
    """Counts of one source partition, the next offset it will take in, (as last
    recorded) where a restore must start replaying it: the first event of a model key
    not yet in a snapshot (:mod:`stream_cd.state.schedule`), and the offset below which
    its messages were committed with their outputs once already (``quiet_below``)."""

    next_offset: int = 0
    events: int = 0
    invalid: int = 0
    replay_from: int = 0
    quiet_below: int = 0


_SKIPPED = Outcome(skipped=True)
_NOTHING = Outcome()  # shared, never changed: a labeled event that decided nothing


class Pipeline:
    """Validates events and routes them to their model key."""

    def __init__(self, config: PipelineConfig | None = None, record_predictions: bool = False,
                 snapshots: SnapshotSchedule | None = None) -> None:
        self.config = config or PipelineConfig()
        self.record_predictions = record_predictions
        self.models: dict[str, ModelKey] = {}
        self.partitions: dict[int, PartitionState] = {}
        self.snapshots = snapshots or SnapshotSchedule()
        self._pending = self.snapshots.pending
        self._dirty_partitions: set[int] = set()
        self._replay_moved = False  # a snapshot was taken: the replay points may have moved
        self.replayed = 0  # messages read again by restores (before their partition's committed position)

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
        if self.snapshots.floors:
            self.snapshots.floors.pop(partition, None)  # past its committed position: its replay is over
        part.next_offset = offset + 1
        part.events += 1
        self._dirty_partitions.add(partition)
        if type(event) is InvalidEvent:
            part.invalid += 1
            outcome = Outcome(invalid=event.reason)
        else:
            try:
                model = self.models.get(event.key) or self.model(event.key)  # type: ignore[union-attr]
                outcome = self._at_offset(model, event, ts, partition, offset)  # type: ignore[arg-type]
            except InvalidEvent as err:
                part.invalid += 1
                outcome = Outcome(invalid=err.reason)
        if offset < part.quiet_below:  # committed with its outputs once already: nothing goes out again
            return _SKIPPED
        return outcome

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
        """A message before the partition's committed position, read again by a restore.

        The model keys whose snapshots do not hold it yet take it in (a key born after
        its partition's replay point has no snapshot, and is made here), the others
        skip it. Whatever it decided, served or rejected was committed when it was
        first read, so nothing of it is sent again: the outcome is always skipped.

        >>> p = Pipeline(PipelineConfig(model="logreg", drift="none", version_every=1))
        >>> p.partitions[0] = PartitionState(next_offset=5)
        >>> o = p.take(decode_event(b'{"key": "new", "x": {"f": 1.0}, "y": true}'), ts=0, offset=3)
        >>> o.skipped, o.decisions, p.models["new"].learned, p.partitions[0].events
        (True, [], 1, 0)
        """
        self.replayed += 1
        if type(event) is InvalidEvent:
            return _SKIPPED
        model = self.models.get(event.key) or self.model(event.key)  # type: ignore[union-attr]
        try:
            self._at_offset(model, event, ts, partition, offset)  # type: ignore[arg-type]
        except InvalidEvent:
            pass
        return _SKIPPED

    def _at_offset(self, model: ModelKey, event: Event, ts: int, partition: int, offset: int) -> Outcome:
        """Serve the event unless its model key has already taken in this offset."""
        offsets = model.offsets
        if offset < offsets.get(partition, 0):
            return _SKIPPED
        offsets[partition] = offset + 1
        model.position = (partition, offset)
        pending = self._pending.get(model.key)
        if pending is None or partition not in pending.first:
            self.snapshots.touch(model.key, partition, offset, model.events_seen)
        return self._handle(model, event, ts)

    def handle(self, event: Event, ts: int) -> Outcome:
        """Learn from (or serve) an already decoded event that comes from no partition."""
        model = self.model(event.key)
        model.position = None
        if model.key not in self._pending:
            self.snapshots.touch(model.key, None, 0, model.events_seen)
        return self._handle(model, event, ts)

    def _handle(self, model: ModelKey, event: Event, ts: int) -> Outcome:
        """The event's verb: a labeled event is learned, a request served, a feedback joined."""
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

    def take_snapshots(self, force: bool = False) -> list[StateRecord]:
        """The model keys whose snapshot is due (every changed one with ``force``), as
        (record key, state, source partitions, ring slot); they then count as snapshotted.
        A key whose snapshot cannot be written is handed to :meth:`not_saved` before the
        partition records are taken."""
        models, schedule = self.models, self.snapshots
        records: list[StateRecord] = []
        for key in schedule.due(lambda k: models[k].events_seen if k in models else 0, force):
            model = models.get(key)
            if model is None:
                schedule.forget([key])
                continue
            records.append((record_key(key), model, tuple(sorted(model.offsets)), schedule.slot(key)))
            schedule.snapshotted(key)
        self._replay_moved = self._replay_moved or bool(records)
        return records

    def not_saved(self, record: str) -> None:
        """The snapshot of ``record`` (a model key's) taken by :meth:`take_snapshots` was
        not written: the key stays due, and a restore starts it afresh from its
        partition's replay point instead of replaying it from its first event."""
        model_key = model_key_of_record(record)
        if model_key is not None:
            self.snapshots.not_saved(model_key)
            self._replay_moved = True

    def unsaved_decision(self, record: str, size: int | None, limit: int, why: str | None = None) -> Decision | None:
        """The ``unsaved`` decision of a model key whose snapshot of ``size`` bytes passes
        ``limit``, or cannot be read back (``why``): it goes on serving and learning, but is
        not checkpointed.

        >>> p = Pipeline(PipelineConfig(model="logreg", drift="none"))
        >>> _ = p.process(b'{"key": "big", "x": {"f": 1.0}, "y": true}', ts=0, offset=4)
        >>> d = p.unsaved_decision("model:big", 9_000_000, 8_388_608)
        >>> d.decision_id, d.evidence["bytes"], d.champion_version
        ('big:0-4:error:unsaved', 9000000, 'v1.0')
        """
        model = self.models.get(model_key_of_record(record) or "")
        if model is None:
            return None
        challenger = model.challenger
        why = why or f"its snapshot is {size:,} bytes, over the limit of {limit:,}"
        evidence = {"bytes": size, "limit": limit,
                    "reason": f"{why}: it serves and learns, but a restart or rebalance starts it afresh"}
        return Decision(model.key, "unsaved", "error", model.champion.label,
                        None if challenger is None else challenger.label, model.events_seen, evidence,
                        ts=int(time.time() * 1000), position=model.position)

    def take_partition_records(self) -> list[StateRecord]:
        """Every held partition's record, with its replay point as of now, when anything of
        them changed since the last call (the offsets moved, or a snapshot moved the
        replay point); nothing otherwise."""
        if not self._dirty_partitions and not self._replay_moved:
            return []
        schedule = self.snapshots
        records: list[StateRecord] = []
        for p in sorted(self.partitions):
            state = self.partitions[p]
            recorded = replace(state, replay_from=schedule.replay_from(p, state.next_offset))
            records.append((record_key(partition=p), recorded, (p,), schedule.partition_slot(p)))
            schedule.partition_recorded(p)
        self._dirty_partitions.clear()
        self._replay_moved = False
        return records

    def restore(self, key: str, state: Any, slot: int | None = None) -> None:
        """Put back a state record read from a checkpoint under its record key (``slot``:
        the ring slot it was read from, after which the next snapshot goes)."""
        model_key = model_key_of_record(key)
        partition = partition_of_record(key)
        if model_key is not None and isinstance(state, ModelKey) and state.key == model_key:
            self.models[model_key] = state
            if slot is not None:
                self.snapshots.restored(model_key, slot)
        elif partition is not None and isinstance(state, PartitionState):
            self.partitions[partition] = state
            if slot is not None:
                self.snapshots.restored_partition(partition, slot)
        else:
            raise StateError(f"checkpoint {key!r} holds {type(state).__name__}, which does not belong under that key")

    def reset(self) -> None:
        """Forget all state (it is restored from the last checkpoints)."""
        self.models.clear()
        self.partitions.clear()
        self.snapshots.reset()
        self._dirty_partitions.clear()
        self._replay_moved = False

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
        self.snapshots.forget(dropped, gone)
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
