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
import threading
import time
from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.checkpoints import MAX_CHECKPOINT_BYTES, PARTITIONS_HEADER, read_checkpoints
from stream_cd.errors import StateError, TransportError
from stream_cd.transport import Checkpoint, Message

__all__ = ["KafkaTransport"]

log = logging.getLogger(__name__)


COMMIT_TIMEOUT_S = 60.0


def _within(seconds: float, fn, *args):
    """Run ``fn(*args)``, raising TimeoutError if it has not returned in ``seconds``
    (kafka-python's transactional calls can wait forever on a coordinator that
    never comes back); the call is left to finish, or not, in its own thread."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            box["error"] = err

    thread = threading.Thread(target=run, name="stream-cd-kafka-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


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
        self._pending: list = []  # at-least-once: sends not yet known delivered
        self._consumer_config = {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "max_poll_records": max_poll_records,
            "fetch_max_wait_ms": 100,
            # A crashed worker's partitions move after 10 s instead of Kafka's default 45 s.
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 3_000,
        }
        self._producer_config = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "linger_ms": 5,
            "max_request_size": MAX_CHECKPOINT_BYTES,
        }
        if self.transactional:
            self._producer_config.update(transactional_id=transactional_id, transaction_timeout_ms=30_000)
        try:
            self.consumer = KafkaConsumer(**self._consumer_config)
            self.producer = self._new_producer()
        except KafkaError as err:
            raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err

    def _new_producer(self) -> KafkaProducer:
        producer = KafkaProducer(**self._producer_config)
        if self.transactional:
            producer.init_transactions()  # fences an earlier instance and aborts its open transaction
        return producer

    def reset(self, give_up_after_s: float = 300.0) -> None:
        """Replace both clients after a failed commit (the broker went away, the group
        forgot this member): the open transaction is fenced and aborted by the new
        producer's ``init_transactions``, and the new consumer joins the group afresh;
        the worker restores its partitions when they are assigned again.

        kafka-python's clients do not always recover on their own from a broker
        restart (a producer waiting forever on its transaction coordinator, a
        consumer that notes it must re-join and never does), hence new ones.
        """
        log.warning("replacing the Kafka clients after a failed commit")
        for close in (lambda: self.producer.close(timeout=1), lambda: self.consumer.close(autocommit=False, timeout_ms=5_000)):
            try:
                _within(10.0, close)
            except Exception as err:  # noqa: BLE001 - the old clients are being thrown away
                log.warning("closing an old Kafka client failed: %r", err)
        self._listener = _Listener(self.topic)
        self._subscribed = False
        self._in_transaction = False
        self._pending = []
        deadline = time.monotonic() + give_up_after_s
        while True:
            try:
                self.consumer = KafkaConsumer(**self._consumer_config)
                self.producer = self._new_producer()
                return
            except KafkaError as err:
                if time.monotonic() > deadline:
                    raise TransportError(f"Kafka at {self.bootstrap} did not come back in {give_up_after_s:.0f} s: {err}") from err
                log.warning("Kafka is not reachable yet (%s); trying again", err)
                time.sleep(2.0)

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
        try:
            self._begin()
            future = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as err:
            raise TransportError(f"sending to {topic!r} failed: {err}") from err
        if not self.transactional:
            self._pending.append(future)

    def commit(self, checkpoints: Sequence[Checkpoint] = ()) -> None:
        """Outputs, checkpoints and offsets; raises :class:`TransportError` if they did not
        all land within ``COMMIT_TIMEOUT_S`` (then nothing of the transaction is visible)."""
        try:
            _within(COMMIT_TIMEOUT_S, self._commit, checkpoints)
        except TimeoutError:
            raise TransportError(f"commit did not finish in {COMMIT_TIMEOUT_S:.0f} s") from None
        except KafkaError as err:
            raise TransportError(f"commit failed: {err}") from err

    def _commit(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not self.transactional:
            self.producer.flush()
            pending, self._pending = self._pending, []
            failed = [f.exception for f in pending if f.failed()]
            if failed:
                raise KafkaError(f"{len(failed)} of {len(pending)} output messages were not delivered: {failed[0]!r}")
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

    def load_checkpoints(self, partitions: Sequence[int]) -> dict[str, list[tuple[int, bytes]]]:
        wanted = set(partitions)
        try:
            found = read_checkpoints(self.bootstrap, self.checkpoints_topic)
        except (KafkaError, StateError) as err:
            raise TransportError(f"reading checkpoints from {self.checkpoints_topic!r} failed: {err}") from err
        return {key: versions for key, (covered, versions) in found.items() if covered & wanted}

    def rebalance_events(self) -> list[tuple[str, list[int]]]:
        events, self._listener.events = self._listener.events, []
        return events

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic)

    def abort(self) -> None:
        """Abort the open transaction; if even that fails, start over with new clients."""
        if not self._in_transaction:
            return
        try:
            _within(COMMIT_TIMEOUT_S, self.producer.abort_transaction)
            self._in_transaction = False
        except (TimeoutError, KafkaError) as err:
            log.warning("could not abort the open transaction (%r)", err)
            self.reset()

    def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(self.topic, partition), offset)

    def committed_offset(self, partition: int) -> int | None:
        try:
            return self.consumer.committed(TopicPartition(self.topic, partition))
        except KafkaError as err:
            raise TransportError(f"reading the committed offset of partition {partition} failed: {err}") from err

    def seek_committed(self, partition: int) -> None:
        tp = TopicPartition(self.topic, partition)
        committed = self.committed_offset(partition)
        if committed is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed)

    def close(self) -> None:
        """Abort what is uncommitted, leave the group and release the clients; never raises."""
        if self._in_transaction:
            try:
                _within(10.0, self.producer.abort_transaction)
            except (TimeoutError, KafkaError) as err:
                log.warning("could not abort the open transaction at close (%r); the broker aborts it on timeout", err)
        for close in (lambda: self.producer.close(timeout=5), lambda: self.consumer.close(autocommit=False)):
            try:
                _within(15.0, close)
            except (TimeoutError, KafkaError) as err:
                log.warning("closing a Kafka client failed: %r", err)
