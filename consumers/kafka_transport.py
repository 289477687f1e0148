"""Kafka as the worker's transport: a consumer-group member that polls in batches.

Two delivery modes:

* exactly-once (``transactional_id`` and ``checkpoints_topic`` given): outputs,
  signed checkpoints and the consumed offsets go out in one Kafka transaction
  (``send_offsets_to_transaction`` with the consumer's group metadata, so a
  fenced zombie cannot commit); readers use ``isolation_level=read_committed``.
  A crash aborts the open transaction, and the restarted worker resumes from
  the last committed checkpoints and offsets together.
* at-least-once: the producer is flushed, then the offsets are committed.

kafka-python runs rebalance callbacks on its network thread, where nothing
may block, so the callbacks only note what changed; the worker handles it
after ``poll`` returns. A revocation rolls back to the last commit (the open
transaction is aborted and the new owner resumes from the committed
checkpoints and offsets), which keeps the exactly-once guarantee without
committing from inside the callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from stream_cd.errors import StateError, TransportError
from stream_cd.transport import Checkpoint, Message

__all__ = ["KafkaTransport", "read_checkpoints", "PARTITIONS_HEADER", "MAX_CHECKPOINT_BYTES"]

log = logging.getLogger(__name__)

PARTITIONS_HEADER = "stream-cd.partitions"
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024


class _Listener(ConsumerRebalanceListener):
    """Notes rebalances; never blocks kafka-python's network thread."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.events: list[tuple[str, list[int]]] = []

    def _note(self, kind: str, partitions) -> None:
        mine = sorted(tp.partition for tp in partitions if tp.topic == self.topic)
        if mine:
            self.events.append((kind, mine))

    def on_partitions_revoked(self, revoked) -> None:
        self._note("revoked", revoked)

    def on_partitions_assigned(self, assigned) -> None:
        self._note("assigned", assigned)

    def on_partitions_lost(self, lost) -> None:
        self._note("revoked", lost)


class KafkaTransport:
    """Consume one topic as a member of ``group``; produce outputs to any topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        checkpoints_topic: str | None = None,
        transactional_id: str | None = None,
        client_id: str = "stream-cd-worker",
        max_poll_records: int = 2000,
    ) -> None:
        if (checkpoints_topic is None) != (transactional_id is None):
            raise ValueError("exactly-once needs both checkpoints_topic and transactional_id")
        self.bootstrap = bootstrap
        self.topic = topic
        self.checkpoints_topic = checkpoints_topic
        self.transactional = transactional_id is not None
        self._listener = _Listener(topic)
        self._in_transaction = False
        self._subscribed = False
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_poll_records=max_poll_records,
                fetch_max_wait_ms=100,
                # A crashed worker's partitions move after 10 s instead of Kafka's default 45 s.
                session_timeout_ms=10_000,
                heartbeat_interval_ms=3_000,
            )
            options = {"transactional_id": transactional_id, "transaction_timeout_ms": 30_000} if self.transactional else {}
            self.producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                linger_ms=5,
                max_request_size=MAX_CHECKPOINT_BYTES,
                **options,
            )
            if self.transactional:
                self.producer.init_transactions()  # fences an earlier instance and aborts its open transaction
        except KafkaError as err:
            raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        if not self._subscribed:
            self.consumer.subscribe([self.topic], listener=self._listener)
            self._subscribed = True
        records = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        if not records:
            return ()
        if len(records) == 1:
            return next(iter(records.values()))
        batch: list = []
        for partition_records in records.values():
            batch.extend(partition_records)
        return batch

    def _begin(self) -> None:
        if self.transactional and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self._begin()
        self.producer.send(topic, key=key, value=value, headers=headers)

    def commit(self, checkpoints: Sequence[Checkpoint] = ()) -> None:
        try:
            if not self.transactional:
                self.producer.flush()
                self.consumer.commit()
                return
            assignment = self.consumer.assignment()
            if not assignment and not self._in_transaction:
                return
            self._begin()
            for cp in checkpoints:
                header = ",".join(map(str, cp.partitions)).encode()
                self.producer.send(self.checkpoints_topic, key=cp.key.encode(), value=cp.blob,
                                   headers=[(PARTITIONS_HEADER, header)])
            offsets = {tp: OffsetAndMetadata(self.consumer.position(tp), "", -1) for tp in assignment}
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
            self.producer.commit_transaction()
            self._in_transaction = False
        except KafkaError as err:
            raise TransportError(f"commit failed: {err}") from err

    def load_checkpoints(self, partitions: Sequence[int]) -> dict[str, list[tuple[int, bytes]]]:
        wanted = set(partitions)
        return {
            key: versions
            for key, (covered, versions) in read_checkpoints(self.bootstrap, self.checkpoints_topic).items()
            if covered & wanted
        }

    def rebalance_events(self) -> list[tuple[str, list[int]]]:
        events, self._listener.events = self._listener.events, []
        return events

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic)

    def abort(self) -> None:
        if self._in_transaction:
            try:
                self.producer.abort_transaction()
            except KafkaError as err:
                raise TransportError(f"could not abort the open transaction: {err}") from err
            self._in_transaction = False

    def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(self.topic, partition), offset)

    def seek_committed(self, partition: int) -> None:
        tp = TopicPartition(self.topic, partition)
        committed = self.consumer.committed(tp)
        if committed is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed)

    def close(self) -> None:
        try:
            if self._in_transaction:
                self.producer.abort_transaction()
                self._in_transaction = False
            self.producer.close(timeout=10)
        finally:
            self.consumer.close()


def read_checkpoints(
    bootstrap: str, topic: str, timeout_s: float = 60.0
) -> dict[str, tuple[set[int], list[tuple[int, bytes]]]]:
    """Every committed checkpoint in ``topic``: per key, the partitions its newest
    version covers and all stored versions (offset, blob), oldest first.

    A tombstone (null value) deletes a key's versions before it.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="stream-cd-restore",
        max_partition_fetch_bytes=MAX_CHECKPOINT_BYTES,
        fetch_max_bytes=MAX_CHECKPOINT_BYTES,
    )
    found: dict[str, tuple[set[int], list[tuple[int, bytes]]]] = {}
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return found
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise StateError(f"reading checkpoints from {topic!r} took over {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500, max_records=1000).values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if record.value is None:
                        found.pop(key, None)
                        continue
                    header = dict(record.headers or ()).get(PARTITIONS_HEADER, b"")
                    covered = {int(p) for p in header.decode().split(",") if p}
                    versions = found.get(key, (set(), []))[1]
                    versions.append((record.offset, record.value))
                    found[key] = (covered, versions)
        return found
    finally:
        consumer.close()
