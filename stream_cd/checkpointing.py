"""How a worker keeps its model state: snapshots written into commits, restores on assignment.

A commit carries the held partitions' records and the snapshots that are due
(:mod:`stream_cd.state.schedule`); a snapshot too large for the store is not
written, and the key goes on unsaved. A restore reads the newest good version of
every record stored beside the assigned partitions (verified before anything is
unpickled; a refused or unreadable one gives way to the version before it) and
resumes each partition at its replay point.

The :class:`Checkpointing` mixin is this part of :class:`stream_cd.worker.Worker`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from stream_cd.errors import StateError, TransportError
from stream_cd.pipeline import Pipeline
from stream_cd.state.newest import Version
from stream_cd.state.records import model_key_of_record, record_key, store_key
from stream_cd.state.signing import dump_state, dump_state_and_copy, open_sealed, unpickle_state
from stream_cd.transport import Checkpoint

__all__ = ["Checkpointing", "pipeline_records", "describe_record"]

log = logging.getLogger("stream_cd.worker")


class Checkpointing:
    """Snapshots and restores of a worker (a mixin of :class:`stream_cd.worker.Worker`)."""

    pipeline: Pipeline
    transport: Any
    stats: Any
    state_key: bytes | None
    max_snapshot_bytes: int
    observer: Any
    _fell_back: set[str]
    _refused: set[str]
    _deleted: set[str]

    def _snapshot(self, record: str, state, partitions: tuple[int, ...], slot: int,
                  going_on: bool = True) -> list[Checkpoint]:
        """The checkpoints of one model key's snapshot: the sealed state in its ring slot, or,
        when it passes ``max_snapshot_bytes`` or cannot be read back, none (see :meth:`_unsaved`).
        A worker ``going_on`` learns on with the unpickled copy; one that stops needs none."""
        key = self.state_key
        assert key is not None
        copy = None
        try:  # a stopping worker reads back only the keys found unsaved before: all would double its last commit
            if going_on or record in self._deleted:
                blob, copy = dump_state_and_copy(state, key, record, f"{describe_record(record)} just written")
            else:
                blob = dump_state(state, key, record)
        except StateError as err:  # written, it would push the good snapshots out of the ring
            return self._unsaved(record, partitions, None, f"its snapshot cannot be read back ({err})")
        if len(blob) > self.max_snapshot_bytes:
            return self._unsaved(record, partitions, len(blob))
        self._deleted.discard(record)  # saved again: should it grow too large again, its snapshots go again
        if copy is not None and going_on:
            self.pipeline.restore(record, copy)
        return [Checkpoint(store_key(record, slot), blob, partitions)]

    def _unsaved(self, record: str, partitions: tuple[int, ...], size: int | None,
                 why: str | None = None) -> list[Checkpoint]:
        """A snapshot over the limit (of ``size`` bytes), or one that cannot be read back
        (``why``), is not written, the key goes on serving and learning, and each time its
        snapshot is due an error and an ``unsaved`` decision say so. Its
        older snapshots are deleted the first time (tombstones in every ring slot): a
        restore then starts it afresh at its partition's replay point, instead of
        replaying it from an old snapshot into the same size again (and again after
        it has been saved since, or after a rollback of the commit that held them)."""
        self.pipeline.not_saved(record)
        if why is None:
            log.error("%s: its snapshot is %s bytes, over the limit of %s (--max-snapshot-bytes); it is served and "
                      "learns, but is not checkpointed, so a restart or rebalance starts it afresh. Bound its state "
                      "(fewer features, a smaller model) or raise the limit", describe_record(record), f"{size:,}",
                      f"{self.max_snapshot_bytes:,}",
                      extra={"event": "snapshot_too_large", "fields": {"record": record, "bytes": size,
                                                                       "limit": self.max_snapshot_bytes}})
        else:
            log.error("%s: %s; it is served and learns, but is not checkpointed, so a restart or rebalance starts "
                      "it afresh", describe_record(record), why,
                      extra={"event": "snapshot_unreadable", "fields": {"record": record, "reason": why}})
        self.stats.unsaved += 1
        decision = self.pipeline.unsaved_decision(record, size, self.max_snapshot_bytes, why)
        if decision is not None:
            self._decided(decision)
        if record in self._deleted:
            return []
        self._deleted.add(record)
        ring = self.pipeline.snapshots.ring
        return [Checkpoint(store_key(record, slot), None, partitions) for slot in range(ring)]

    def _restore_committed(self, partitions: list[int], wait_s: float = 40.0) -> dict[int, int]:
        """Restore, and make sure what was read is the last committed state.

        A read of the checkpoints stops where another worker's transaction is still
        open, so it can miss a later commit of the partition's previous owner; its
        partition record would then be older than the group's committed offset. Read
        again until it is not (a transaction is open for at most its 30 s timeout).
        """
        deadline = time.monotonic() + wait_s
        positions = self.restore(partitions)
        self._quiet_to_committed(partitions)
        while True:
            stale = []
            for p in partitions:
                if record_key(partition=p) in self._fell_back:
                    continue  # deliberately older, or none: its newest checkpoint was refused
                state = self.pipeline.partitions.get(p)
                committed = self.transport.committed_offset(p)
                if committed is not None and committed > (0 if state is None else state.next_offset):
                    stale.append(p)
            if not stale:
                return positions
            if time.monotonic() > deadline:
                raise TransportError(
                    f"the checkpoints of partitions {stale} are older than their committed offsets after "
                    f"{wait_s:.0f} s; a transaction may be stuck open"
                )
            time.sleep(0.5)
            self.pipeline.release(stale)
            positions.update(self.restore(stale))

    def _quiet_to_committed(self, partitions: list[int]) -> None:
        """A partition restored from an older record than its newest (which was refused)
        processes the messages up to its committed offset again, quietly: their outputs
        were committed when they were first read (:class:`~stream_cd.pipeline.PartitionState`'s
        ``quiet_below``, kept in its records until the replay is past it)."""
        for p in partitions:
            state = self.pipeline.partitions.get(p)
            if state is None or record_key(partition=p) not in self._fell_back:
                continue  # (with no record left at all, it resumes from the committed offset itself)
            committed = self.transport.committed_offset(p)
            if committed is not None and committed > state.next_offset:
                state.quiet_below = max(state.quiet_below, committed)

    def restore(self, partitions: list[int]) -> dict[int, int]:
        """Load the newest good snapshot of every model key stored beside ``partitions``,
        and their partition records; return the offset each partition must resume from:
        its replay point (the first event of a key not yet in a snapshot), or earlier
        where a key had to fall back to an older snapshot."""
        started = time.perf_counter()
        restored_before, refused_before = self.stats.restored, self.stats.refused_checkpoints
        self._fell_back = set()
        self._refused = set()
        older: dict[str, int] = {}
        found = self.transport.load_checkpoints(partitions, self._open)
        while found:
            unreadable = {record: version.offset for record, version in found.items() if not self._put_back(record, version)}
            if not unreadable:
                break
            older.update(unreadable)
            found = {record: version for record, version in self.transport.load_checkpoints(partitions, self._open, older).items()
                     if record in unreadable}
        for record in sorted(self._refused - set(pipeline_records(self.pipeline))):
            self._fell_back.add(record)  # a partition record among them resumes where its keys need it, or committed
            log.warning("cannot restore %s: no valid checkpoint is left; it starts afresh", describe_record(record))
        positions = self._positions_after_restore(partitions)
        restored, refused = self.stats.restored - restored_before, self.stats.refused_checkpoints - refused_before
        seconds = time.perf_counter() - started
        log.info("restored %d state records of partitions %s from checkpoints in %.2f s (%d refused, %d from an older "
                 "snapshot); replaying from %s", restored, ", ".join(map(str, partitions)), seconds, refused,
                 len(self._fell_back), positions,
                 extra={"event": "restore", "fields": {"partitions": list(partitions), "restored": restored,
                                                       "refused": refused, "older": len(self._fell_back),
                                                       "seconds": round(seconds, 4), "positions": positions}})
        if self.observer is not None:
            self.observer.restored(restored, refused, seconds)
        return positions

    def _open(self, record: str, offset: int, blob: bytes) -> bytes:
        """Verify a stored version before anything of it is unpickled."""
        try:
            return open_sealed(blob, self.state_key, f"{describe_record(record)} at checkpoint offset {offset}",  # type: ignore[arg-type]
                               record.encode())
        except StateError as err:
            self.stats.refused_checkpoints += 1
            self._refused.add(record)
            log.warning("%s", err)
            raise

    def _put_back(self, record: str, version: Version) -> bool:
        """Unpickle a verified version into the pipeline; False when it cannot be loaded here."""
        what = f"{describe_record(record)} at checkpoint offset {version.offset}"
        try:
            self.pipeline.restore(record, unpickle_state(version.payload, what), version.slot)
        except StateError as err:
            self.stats.refused_checkpoints += 1
            self._refused.add(record)
            log.warning("%s", err)
            return False
        self.stats.restored += 1
        if version.fell_back:
            self._fell_back.add(record)
            log.warning("restored %s from an older snapshot (checkpoint offset %d): the newer ones were refused",
                        describe_record(record), version.offset)
        return True

    def _positions_after_restore(self, partitions: list[int]) -> dict[int, int]:
        """Each restored partition's replay point, moved back to the events a key restored
        from an older snapshot has not seen; the pipeline holds that point as the
        partition's replay point until the replay has passed its committed position."""
        pipeline = self.pipeline
        positions: dict[int, int] = {}
        for p in partitions:
            state = pipeline.partitions.get(p)
            if state is not None:
                positions[p] = min(state.replay_from, state.next_offset)
        unrecorded = {p for p in partitions if p not in positions}  # every version of its record refused
        for record, model in ((record_key(key), m) for key, m in pipeline.models.items()):
            if record not in self._fell_back and not unrecorded.intersection(model.offsets):
                continue
            for p, offset in model.offsets.items():  # replay what the key's older snapshot lacks
                if p in partitions:
                    positions[p] = min(positions.get(p, offset), offset)
        pipeline.snapshots.floors.update(positions)
        return positions



def pipeline_records(pipeline: Pipeline) -> list[str]:
    """The record keys of the state a pipeline holds."""
    return [record_key(key) for key in pipeline.models] + [record_key(partition=p) for p in pipeline.partitions]


def describe_record(record: str) -> str:
    """How a state record is named in messages: its model key, or its partition."""
    model_key = model_key_of_record(record)
    return f"model key {model_key!r}" if model_key is not None else record.replace(":", " ", 1)


