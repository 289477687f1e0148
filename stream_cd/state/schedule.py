"""When each model key's snapshot is written, and where a restore must replay from.

A commit does not snapshot every model key that changed. Each commit records the
small partition records (offsets, counts, and where a restore must start to
replay); a model key's full snapshot is written once it has taken in
``every_events`` events since its last one, or ``every_s`` seconds after its first
change since then, whichever comes first (and for every changed key when the
worker stops). So the state written grows with the events, not with the keys:
ten thousand keys that each see a few events a minute cost a few snapshots a
second, not ten thousand a commit.

A restore loads each key's newest good snapshot and replays the partition from
the earliest offset any key has not yet snapshotted, its *replay point*: the
keys whose snapshots already hold an event skip it (their own offsets say so),
the others learn it again, and what the replayed events decide or serve was
already committed, so it is not sent again (:meth:`stream_cd.pipeline.Pipeline.take`).
The result is the state an uninterrupted run has, bit for bit.

>>> clock = iter([0.0, 0.0, 5.0, 70.0]).__next__
>>> s = SnapshotSchedule(every_events=3, every_s=60.0, clock=clock)
>>> s.touch("a", 0, 10, events_seen=0); s.touch("b", 0, 11, events_seen=0)
>>> s.replay_from(0, next_offset=12)
10
>>> s.due({"a": 3, "b": 1}.__getitem__)   # a took in 3 events since it was touched
['a']
>>> s.snapshotted("a"); s.replay_from(0, next_offset=12)
11
>>> s.due({"b": 1}.__getitem__)           # 70 s after b's first change
['b']

Ring slots: each key's snapshots take turns among ``ring`` store keys, so a
compacted topic keeps the last ``ring`` of them to fall back on.

>>> s.slot("a"), s.slot("b")
(1, 0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["SnapshotSchedule", "DEFAULT_SNAPSHOT_EVENTS", "DEFAULT_SNAPSHOT_SECONDS", "DEFAULT_RING"]

# A key's snapshot at least every 50,000 of its own events: at a hot key's 20,000
# events/s, a restore replays at most 2.5 s of its learning. And at least every 60 s
# after its first change: a restore re-reads at most a minute of the partition, while
# ten thousand keys that all change cost 170 snapshots a second, not 5,000.
DEFAULT_SNAPSHOT_EVENTS = 50_000
DEFAULT_SNAPSHOT_SECONDS = 60.0
# The last three snapshots of each key stay in the compacted topic: a tampered or
# unreadable newest one has two older ones behind it.
DEFAULT_RING = 3


@dataclass(slots=True)
class Pending:
    """A key changed since its last snapshot: when it first changed, its events then,
    and the offset of its first event since on each partition."""

    since: float
    events_at: int
    first: dict[int, int] = field(default_factory=dict)


class SnapshotSchedule:
    """Which keys' snapshots are due, their ring slots, and each partition's replay point."""

    def __init__(self, every_events: int = DEFAULT_SNAPSHOT_EVENTS, every_s: float = DEFAULT_SNAPSHOT_SECONDS,
                 ring: int = DEFAULT_RING, clock: Callable[[], float] = time.monotonic) -> None:
        if every_events < 1:
            raise ValueError(f"snapshot every {every_events} events: it must be at least 1")
        if every_s < 0:
            raise ValueError(f"snapshot every {every_s} seconds: it cannot be negative")
        if ring < 1:
            raise ValueError(f"a ring of {ring} snapshots: keep at least 1")
        self.every_events = every_events
        self.every_s = every_s
        self.ring = ring
        self.clock = clock
        self.pending: dict[str, Pending] = {}
        self.unsaved: set[str] = set()  # keys too large to snapshot: they hold no replay point back
        self.floors: dict[int, int] = {}  # partition -> where its restore started, until it has replayed
        self._slots: dict[str, int] = {}  # key -> the ring slot its next snapshot takes
        self._partition_slots: dict[int, int] = {}

    def touch(self, key: str, partition: int | None, offset: int, events_seen: int) -> None:
        """``key`` took in the event at ``offset`` of ``partition`` (None: from no partition)."""
        pending = self.pending.get(key)
        if pending is None:
            pending = self.pending[key] = Pending(self.clock(), events_seen)
        if partition is not None and partition not in pending.first:
            pending.first[partition] = offset

    def due(self, events_of: Callable[[str], int], force: bool = False) -> list[str]:
        """The changed keys whose snapshot is due (all of them with ``force``), in order."""
        if force:
            return sorted(self.pending)
        now = self.clock()
        return sorted(key for key, p in self.pending.items()
                      if now - p.since >= self.every_s or events_of(key) - p.events_at >= self.every_events)

    def snapshotted(self, key: str) -> None:
        """``key``'s snapshot went into the commit being made."""
        self.pending.pop(key, None)
        self.unsaved.discard(key)
        self._slots[key] = (self._slots.get(key, 0) + 1) % self.ring

    def not_saved(self, key: str) -> None:
        """``key``'s snapshot could not be written (too large): it stays due, and holds no
        partition's replay point back (a restore starts it afresh)."""
        self.unsaved.add(key)

    def slot(self, key: str) -> int:
        """The ring slot ``key``'s next snapshot takes."""
        return self._slots.get(key, 0)

    def restored(self, key: str, slot: int) -> None:
        """``key`` was restored from the snapshot in ``slot``: the next one takes the slot after."""
        self._slots[key] = (slot + 1) % self.ring

    def partition_slot(self, partition: int) -> int:
        """The ring slot the next record of ``partition`` takes."""
        return self._partition_slots.get(partition, 0)

    def partition_recorded(self, partition: int) -> None:
        """``partition``'s record went into the commit being made."""
        self._partition_slots[partition] = (self._partition_slots.get(partition, 0) + 1) % self.ring

    def restored_partition(self, partition: int, slot: int) -> None:
        """``partition``'s record was restored from ``slot``."""
        self._partition_slots[partition] = (slot + 1) % self.ring

    def resume_from(self, partition: int, next_offset: int) -> int:
        """Where reading ``partition`` on must start: its ``next_offset``, or where the
        running restore of it started while that replay is not over."""
        return min(next_offset, self.floors.get(partition, next_offset))

    def replay_from(self, partition: int, next_offset: int) -> int:
        """Where a restore of ``partition`` must start: the first event of any key not yet
        snapshotted, and no later than where the running restore of it started."""
        start = self.resume_from(partition, next_offset)
        for key, pending in self.pending.items():
            first = pending.first.get(partition)
            if first is not None and first < start and key not in self.unsaved:
                start = first
        return start

    def forget(self, keys: Iterable[str] = (), partitions: Iterable[int] = ()) -> None:
        """Drop what is known of ``keys`` and ``partitions`` (given up)."""
        for key in keys:
            self.pending.pop(key, None)
            self.unsaved.discard(key)
            self._slots.pop(key, None)
        for p in partitions:
            self.floors.pop(p, None)
            self._partition_slots.pop(p, None)

    def reset(self) -> None:
        """Forget everything (the state is restored from the store)."""
        self.pending.clear()
        self.unsaved.clear()
        self.floors.clear()
        self._slots.clear()
        self._partition_slots.clear()
