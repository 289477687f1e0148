"""The commits of :class:`consumers.kafka_transport.KafkaTransport`: outputs, checkpoints and
offsets, in one transaction (exactly-once) or outputs flushed, then offsets (at-least-once).

Either way the commit lands in a thread of its own (:class:`consumers.kafka_calls.Call`)
while the worker goes on; exactly-once, outputs sent meanwhile are held for the next
transaction. Each checkpoint goes to the checkpoints partition of each source partition
it covers, so that a restore reads only those partitions. The :class:`KafkaCommits`
mixin is this part of the transport.

Exactly-once, a transaction commits only once every message sent in it was delivered.
kafka-python (3.0) does not make sure of that itself: a batch that fails with a
retriable error it may no longer retry (its delivery timeout passed, or the producer's
id or epoch changed since it was sent) fails alone, with no change to the transaction,
which then commits without it (``tests/kafka/test_exactly_once.py`` shows it). A decision or a dead letter would be lost
while the offsets past its event commit. So the commit flushes, checks the delivery of
each message of the transaction, and fails (the worker rolls back) if one was not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.checkpoints import PARTITIONS_HEADER
from consumers.kafka_calls import Call, within
from stream_cd.errors import TransportError
from stream_cd.transport import Checkpoint

__all__ = ["KafkaCommits", "COMMIT_TIMEOUT_S"]

log = logging.getLogger("consumers.kafka_transport")

COMMIT_TIMEOUT_S = 60.0


class KafkaCommits:
    """Sends and commits of a Kafka transport (a mixin of :class:`consumers.kafka_transport.KafkaTransport`)."""

    consumer: Any
    producer: Any
    transactional: bool
    checkpoints_topic: str | None
    topic: str

    def _begin(self) -> None:
        if self.transactional and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        if self._landing is not None and self.transactional:
            if not self._landing[0].done():
                self._held.append((topic, key, value, headers))  # for the next transaction
                return
            self._land()
        try:
            self._begin()
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as err:
            raise TransportError(f"sending to {topic!r} failed: {err}") from err
        self._pending.append(future)  # checked at the commit: every output must have landed

    def commit(self, checkpoints: Sequence[Checkpoint] = (), *, wait: bool = True) -> None:
        """Outputs, checkpoints and offsets; raises :class:`TransportError` if they did not
        all land within ``COMMIT_TIMEOUT_S`` (then nothing of the transaction is visible).

        With ``wait=False`` the call returns once the commit is handed over, and it lands
        while the worker goes on learning: its round trips to the broker (exactly-once,
        the offsets' commit and the transaction's end) take 2 to 15 ms, up to 1 µs per
        event at the default cadence. Exactly-once, outputs sent meanwhile are held for
        the next transaction. A failure raises from the next ``poll``, ``send`` or
        ``commit``; the worker then rolls back to the commit before, as for any failure.
        Without a fetch process, this thread's consumer is the one that commits, and
        nothing may use it meanwhile: the call waits.
        """
        self._land()
        try:
            pending, self._pending = self._pending, []  # the sends this commit checks
            if self.transactional:
                if not self.consumer.assignment() and not self._in_transaction:
                    self._landed += 1  # nothing to commit (nothing was sent): landed as it is
                    return
                offsets = self._offsets()
                self._check_held(checkpoints, offsets)
                metadata = self.consumer.group_metadata() if offsets else None
                call = Call(self._commit_transaction, checkpoints, offsets, metadata, pending)
            else:
                offsets = self._offsets() if self._fetcher is not None else None
                call = Call(self._commit_at_least_once, pending, offsets)
                wait = wait or self._fetcher is None
        except KafkaError as err:
            raise TransportError(f"commit failed: {err}") from err
        self._landing = (call, time.monotonic() + COMMIT_TIMEOUT_S)
        if wait:
            self._land()

    @staticmethod
    def _check_held(checkpoints: Sequence[Checkpoint], offsets: dict) -> None:
        """State goes out only for partitions whose offsets go out with it. A rebalance can
        take partitions while the worker still holds their uncommitted state (it learns of
        it after its next poll); a transaction of that state without their offsets would
        not be fenced by the group's generation, and would land after the new owner's
        commits, leaving an older partition record and older snapshots as the newest."""
        covered = {p for cp in checkpoints for p in cp.partitions}
        unowned = covered - {tp.partition for tp in offsets}
        if unowned:
            raise TransportError(f"partitions {sorted(unowned)} are no longer held (a rebalance took them): their state "
                                 f"is not committed, and the worker rolls back to its last commit")

    def _commit_at_least_once(self, pending: list, offsets: dict | None) -> None:
        """In a thread of its own: the outputs sent so far delivered, then ``offsets`` (None:
        the consumer's positions). The worker's thread keeps off the consumer meanwhile
        (see :meth:`_keep_membership`)."""
        if self._before_commit is not None:
            self._before_commit()
        self.producer.flush()
        _check_delivered(pending)
        if offsets is None:
            self.consumer.commit()
        elif offsets:
            self.consumer.commit(offsets)

    def _commit_transaction(self, checkpoints: Sequence[Checkpoint], offsets: dict, metadata, pending: list) -> None:
        """In a thread of its own: uses the producer only (the worker's thread holds back its
        sends meanwhile), never the consumer, which is not thread-safe. ``pending`` are the
        futures of the outputs sent in the transaction; it commits only if all of them, and
        the checkpoints, were delivered (see the module docstring)."""
        if self._before_commit is not None:
            self._before_commit()
        self._begin()
        for cp in checkpoints:
            header = [(PARTITIONS_HEADER, ",".join(map(str, cp.partitions)).encode())]
            for partition in cp.partitions:  # beside the state of each source partition it covers
                pending.append(self.producer.send(self.checkpoints_topic, key=cp.key.encode(), value=cp.blob,
                                                  headers=header, partition=partition))
        self.producer.flush()
        _check_delivered(pending)  # else the transaction stays open; the worker's rollback aborts it
        if offsets:
            self.producer.send_offsets_to_transaction(offsets, metadata)
        self.producer.commit_transaction()

    def _land(self) -> None:
        """Wait for the commit in flight, if any; then send the outputs held meanwhile in a
        new transaction. Raises :class:`TransportError` if the commit failed (the held
        outputs are dropped with the rest of the work since the commit before)."""
        if self._landing is None:
            return
        (call, deadline), self._landing = self._landing, None
        held, self._held = self._held, []
        try:
            call.result(deadline - time.monotonic())
        except TimeoutError:
            raise TransportError(f"commit did not finish in {COMMIT_TIMEOUT_S:.0f} s") from None
        except KafkaError as err:
            raise TransportError(f"commit failed: {err}") from err
        self._landed += 1
        self._in_transaction = False
        for output in held:
            self.send(*output)

    def landed(self) -> int:
        """How many calls of :meth:`commit` have landed so far (one with nothing to commit
        counts). A commit handed over with ``wait=False`` counts from the ``poll``, ``send``
        or ``commit`` that finds it done."""
        return self._landed

    def _land_dropping_held(self) -> None:
        """For a caller about to drop what is uncommitted: wait for the commit in flight
        without sending the outputs held meanwhile; its failure is only logged (a failed
        transaction is still open, and is aborted with the rest)."""
        self._held = []
        try:
            self._land()
        except TransportError as err:
            log.warning("%s", err)

    def _offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The next offset of every held partition, to commit; never below the committed offset
        read last (a restore replays from before it, and the group's offset stays where the
        committed state is)."""
        floors = self._floors
        if self._fetcher is None:
            return {tp: OffsetAndMetadata(max(self.consumer.position(tp), floors.get(tp.partition, 0)), "", -1)
                    for tp in self.consumer.assignment()}
        held = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic}
        return {
            TopicPartition(self.topic, p): OffsetAndMetadata(max(offset, floors.get(p, 0)), "", -1)
            for p, offset in self._positions.items()
            if p in held
        }

    def abort(self) -> None:
        """Abort the open transaction, and a commit in flight that failed; if even that
        fails, start over with new clients."""
        self._land_dropping_held()
        if not self._in_transaction:
            return
        self._pending = []  # the transaction's outputs are dropped with it
        try:
            within(COMMIT_TIMEOUT_S, self.producer.abort_transaction)
            self._in_transaction = False
        except (TimeoutError, KafkaError) as err:
            log.warning("could not abort the open transaction (%r)", err)
            self.reset()


def _check_delivered(pending: list) -> None:
    """Raise :class:`KafkaError` unless every sent message of ``pending`` (their futures,
    all done after a flush; one that is not counts as undelivered) was delivered."""
    failed = [f for f in pending if not f.is_done or f.failed()]
    if failed:
        why = failed[0].exception if failed[0].is_done else "still unanswered after the flush"
        raise KafkaError(f"{len(failed)} of {len(pending)} output messages were not delivered: {why!r}")
