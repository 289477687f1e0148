"""How a worker meets a rebalance or a failed transport: roll back to the last commit, restore, resume.

A rebalance that takes partitions away rolls every held partition back to its
last commit (the open transaction is aborted; the new owner of a revoked
partition resumes from the same commit, so no event is learned twice) and
restores the partitions held then from their checkpoints. A failed commit or
a lost broker resets the transport and restores the partitions when the group
assigns them again. Without a state key, the uncommitted messages are read and
processed again (at least once).

The :class:`Rebalancing` mixin is this part of :class:`stream_cd.worker.Worker`.

A revocation drops what was learned since the last commit, and the state comes
back from the checkpoints:

>>> import tempfile
>>> from stream_cd.embedded import DirectoryStore, EmbeddedTransport
>>> from stream_cd.events import decode_event
>>> from stream_cd.pipeline import Pipeline
>>> from stream_cd.transport import Topics
>>> from stream_cd.worker import Worker
>>> t = EmbeddedTransport([b'{"x": {"a": 1}, "y": true}'] * 3, store=DirectoryStore(tempfile.mkdtemp()))
>>> w = Worker(t, Pipeline(), Topics(), state_key=b"k" * 32)
>>> w.run().consumed                      # learns three events and commits them
3
>>> _ = w.pipeline.take(decode_event(b'{"x": {"a": 2}, "y": false}'), ts=0, offset=3)
>>> w.pipeline.summary()["models"]["default"]["learned"]  # a fourth, not committed
4
>>> w._rebalanced([("revoked", [0]), ("assigned", [0])])
>>> w.pipeline.summary()["models"]["default"]["learned"], w.stats.restored
(3, 2)
"""

from __future__ import annotations

import logging
from typing import Any

from stream_cd.errors import TransportError
from stream_cd.pipeline import Pipeline

__all__ = ["Rebalancing", "MAX_FAILURES"]

log = logging.getLogger("stream_cd.worker")

MAX_FAILURES = 10  # failed transports in a row before the worker gives up


class Rebalancing:
    """Rollbacks, restores and recoveries of a worker (a mixin of :class:`stream_cd.worker.Worker`)."""

    pipeline: Pipeline
    transport: Any
    state_key: bytes | None
    observer: Any
    _failures: int
    _in_flight: bool
    _uncommitted: int
    _deleted: set[str]

    def _recover(self, err: TransportError) -> None:
        """The transport failed (the broker went away, the group forgot this member): drop
        what is uncommitted and start over from the last commit with a reset transport.
        With state, nothing is lost and nothing repeated; without, the uncommitted messages
        are processed again (at least once). Gives up after ``MAX_FAILURES`` in a row."""
        self._failures += 1
        self._in_flight = False
        if self._failures > MAX_FAILURES:
            raise TransportError(f"giving up after {MAX_FAILURES} failures in a row; the last: {err}") from err
        log.warning("%s; rolling back to the last commit (failure %d of at most %d in a row)", err, self._failures, MAX_FAILURES,
                    extra={"event": "commit_failure", "fields": {"error": str(err), "failures_in_a_row": self._failures}})
        if self.observer is not None:
            self.observer.failed(err)
        self.transport.reset()
        self._outputs_landed(rollback=True)
        if self.state_key is not None:
            self.pipeline.reset()  # restored from the checkpoints when the partitions come back
        else:
            self.pipeline.forget_positions()  # the uncommitted messages come again and are processed again
        self._uncommitted = 0

    def _rollback(self) -> None:
        """Abort the open transaction and return every held partition to its committed state."""
        self.transport.abort()
        self._outputs_landed(rollback=True)
        self._deleted.clear()  # the tombstones of the aborted transaction were not written
        self.pipeline.reset()
        self._uncommitted = 0
        self._resume(self.transport.assignment())

    def _rebalanced(self, changes: list[tuple[str, list[int]]]) -> None:
        """Partitions were revoked or assigned inside the last poll.

        With state, uncommitted work is rolled back (the new owner of a revoked
        partition resumes from its committed state, so nothing is learned twice)
        and every held partition is restored from its checkpoints. Without state,
        the unprocessed batch is dropped and the held partitions re-read from their
        committed offsets.
        """
        log.info("rebalance: %s", "; ".join(f"{kind} {', '.join(map(str, partitions))}" for kind, partitions in changes),
                 extra={"event": "rebalance", "fields": {"changes": [{"kind": k, "partitions": p} for k, p in changes],
                                                         "held": self.transport.assignment()}})
        if self.observer is not None:
            self.observer.rebalanced(changes)
        revoked = any(kind == "revoked" for kind, _ in changes)
        if self.state_key is not None and revoked:
            self._rollback()
            return
        if revoked:
            for kind, partitions in changes:
                if kind == "revoked":
                    self.pipeline.release(partitions)
        self._resume(self.transport.assignment())

    def _resume(self, partitions: list[int]) -> None:
        """Read ``partitions`` on: restore those not held, and seek every one.

        A held partition resumes at its next offset, unless the replay of its restore is
        not over (its keys not snapshotted then have not all taken in their events up to
        its committed position yet): then it resumes where that replay started, which is
        safe, since every key skips the events it has already taken in. A rebalance
        seen in two polls (the revocation in one, the new assignment in the next) restores
        the partitions in the first and finds them held in the second, mid-replay."""
        held = set(self.pipeline.partitions) | {p for s in self.pipeline.models.values() for p in s.offsets}
        fresh = [p for p in partitions if p not in held] if self.state_key is not None else []
        positions = self._restore_committed(fresh) if fresh else {}
        for partition in partitions:
            if partition in positions:
                self.transport.seek(partition, positions[partition])
            elif partition in self.pipeline.partitions and self.state_key is not None:
                next_offset = self.pipeline.partitions[partition].next_offset
                self.transport.seek(partition, self.pipeline.snapshots.resume_from(partition, next_offset))
            else:
                self.transport.seek_committed(partition)
