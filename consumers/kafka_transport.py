"""Kafka as the worker's transport: a consumer-group member that polls in batches.

Two delivery modes:

* exactly-once (``transactional_id`` and ``checkpoints_topic`` given): outputs,
  signed checkpoints and the consumed offsets go out in one Kafka transaction
  (``send_offsets_to_transaction`` with the consumer's group metadata, so a
  fenced zombie cannot commit); readers use ``isolation_level=read_committed``.
  A crash aborts the open transaction, and the restarted worker resumes from
  the last committed checkpoints and offsets together.
* at-least-once: the producer is flushed, then the offsets are committed.

A side output that must be delivered before its inputs count as processed, but
that does not wait for the transaction (the served predictions, see
``producers.predictions``), is flushed first by ``before_commit``.

Either way the commit can land in a thread of its own while the worker learns
from the next events (``commit(wait=False)``).

By default a fetch process (``consumers.fetcher``) reads and decodes the held
partitions, and this process's consumer only keeps the group membership
(``consumers.kafka_membership``) and commits: kafka-python's record parsing and
the JSON decoding then run beside the learning instead of taking turns with it.

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
from collections.abc import Callable, Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from consumers.checkpoints import MAX_CHECKPOINT_BYTES
from consumers.kafka_calls import Call, within
from consumers.kafka_commits import COMMIT_TIMEOUT_S, KafkaCommits
from consumers.kafka_membership import KafkaMembership
from consumers.kafka_restore import KafkaRestore
from consumers.fetch_process import lag_of
from consumers.fetcher import Fetcher
from consumers.group_watch import GroupWatch
from consumers.unreadable import READ_ERRORS, locate, unreadable_message
from stream_cd.errors import TransportError, UnreadableMessage
from stream_cd.events import DEFAULT_MAX_EVENT_BYTES
from stream_cd.transport import Message

__all__ = ["KafkaTransport", "COMMIT_TIMEOUT_S"]

log = logging.getLogger(__name__)


# kafka-python's sender waits this long when a step of a transaction is queued from the
# answer to another (the group coordinator's lookup, then the offsets' commit): at its
# default of 100 ms the first commit of a transactional producer takes ~235 ms, at 20 ms
# ~70 ms. It is also the pause before a failed send is retried, short but not busy.
TRANSACTION_RETRY_BACKOFF_MS = 20

# The codec of everything this worker writes (checkpoints above all; decisions and dead
# letters are small). Measured on a logreg pair's 165 kB checkpoint (bench/codec_choice.py): lz4
# keeps 0.64 of the bytes and takes 0.18 ms to compress and 0.05 ms to decompress; zstd
# keeps 0.47 for 0.59 and 0.20 ms, snappy 0.62 for 0.25 and 0.13, gzip 0.47 for 26 and
# 0.6 ms. The worker is short of CPU, not of bandwidth, and a restore decompresses every
# key's checkpoint while the worker serves nothing: lz4.
COMPRESSION_TYPE = "lz4"


class _Listener(ConsumerRebalanceListener):
    """Notes rebalances; never blocks kafka-python's network thread (pausing a
    partition here, for one, deadlocks it)."""

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


def _quietly(close: Callable[[], None]) -> None:
    """Close a client of a failed start; the error that counts is the one being raised."""
    try:
        close()
    except Exception as err:  # noqa: BLE001
        log.debug("closing a client of a failed start: %r", err)


class KafkaTransport(KafkaCommits, KafkaRestore, KafkaMembership):
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
        fetch_process: bool = True,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        before_commit: Callable[[], None] | None = None,
        client_options: dict | None = None,
        producer_options: dict | None = None,
    ) -> None:
        """``before_commit`` runs in the commit's thread before anything of the commit: it may
        raise :class:`KafkaError`, and the commit then fails. ``client_options`` (kafka-python
        settings: security, SASL, TLS) go to every client, the fetch process's too;
        ``producer_options`` (kafka-python ``KafkaProducer`` settings, such as
        ``delivery_timeout_ms``) to the producer of outputs only, over its defaults."""
        if (checkpoints_topic is None) != (transactional_id is None):
            raise ValueError("exactly-once needs both checkpoints_topic and transactional_id")
        self.bootstrap = bootstrap
        self.client_options = dict(client_options or {})
        self.topic = topic
        self.checkpoints_topic = checkpoints_topic
        self.transactional = transactional_id is not None
        self._before_commit = before_commit
        self._listener = _Listener(topic)
        self._in_transaction = False
        self._landing: tuple[Call, float] | None = None  # exactly-once: a commit in flight, its deadline
        self._held: list[tuple] = []  # outputs sent while it flies
        self._landed = 0  # commits landed so far (see landed())
        self._subscribed = False
        self._pending: list = []  # the sends since the last commit, to check at the next that all landed
        self._fetch_options = {"max_records": max_poll_records, "max_event_bytes": max_event_bytes} if fetch_process else None
        self._fetcher: Fetcher | None = None
        self._positions: dict[int, int] = {}  # with a fetch process: next offset to commit, per partition
        self._floors: dict[int, int] = {}  # partition -> its committed offset when last read: never commit below it
        self.restore_bytes_read = 0
        self._membership_polled = 0.0
        self._generation = -1  # the member's generation when last seen, and since when
        self._joined_at = 0.0
        self._last_batch = 0.0  # when the fetch process last handed over a batch
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
            **self.client_options,
        }
        self._producer_config = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "linger_ms": 5,
            "max_request_size": MAX_CHECKPOINT_BYTES,
            "compression_type": COMPRESSION_TYPE,
            **self.client_options,
            **(producer_options or {}),
        }
        if self.transactional:
            self._producer_config.update(
                transactional_id=transactional_id,
                transaction_timeout_ms=30_000,
                retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
            )
        try:
            self.consumer, self.producer = self._new_clients()
        except KafkaError as err:
            raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err
        # With a fetch process the member polls rarely: the coordinator tells of a rebalance.
        self._watch = None
        if fetch_process:
            self._watch = GroupWatch({"bootstrap_servers": bootstrap, "client_id": f"{client_id}-watch",
                                      **self.client_options}, group)
        self._start_fetcher()

    def _start_fetcher(self) -> None:
        if self._fetch_options is not None:
            self._fetcher = Fetcher(self._consumer_config, self.topic, **self._fetch_options)
            self._positions = {}

    def _new_clients(self) -> tuple[KafkaConsumer, KafkaProducer]:
        """A consumer and a producer, or neither: one made before the other failed is closed,
        so that retrying through an outage leaves no clients (threads, sockets) behind."""
        consumer = KafkaConsumer(**self._consumer_config)
        producer = None
        try:
            producer = KafkaProducer(**self._producer_config)
            if self.transactional:
                producer.init_transactions()  # fences an earlier instance and aborts its open transaction
        except BaseException:
            if producer is not None:
                _quietly(lambda: producer.close(timeout=0))
            _quietly(lambda: consumer.close(autocommit=False))
            raise
        return consumer, producer

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
        self._land_dropping_held()  # not to leave it running on a producer that is being closed
        if self._fetcher is not None:
            self._fetcher.close()
        for close in (lambda: self.producer.close(timeout=1), lambda: self.consumer.close(autocommit=False, timeout_ms=5_000)):
            try:
                within(10.0, close)
            except Exception as err:  # noqa: BLE001 - the old clients are being thrown away
                log.warning("closing an old Kafka client failed: %r", err)
        self._listener = _Listener(self.topic)
        self._subscribed = False
        self._in_transaction = False
        self._pending = []
        deadline = time.monotonic() + give_up_after_s
        while True:
            try:
                self.consumer, self.producer = self._new_clients()
                break
            except KafkaError as err:
                if time.monotonic() > deadline:
                    raise TransportError(f"Kafka at {self.bootstrap} did not come back in {give_up_after_s:.0f} s: {err}") from err
                log.warning("Kafka is not reachable yet (%s); trying again", err)
                time.sleep(2.0)
        self._start_fetcher()

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        if self._landing is not None and self._landing[0].done():
            self._land()  # its failure shows at once, and the held outputs go out
        if not self._subscribed:
            self._subscribe()
        if self._fetcher is not None:
            return self._poll_fetched(max_records, timeout_s)
        try:
            records = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except READ_ERRORS as err:
            raise self._unreadable(err) from err
        if not records:
            return ()
        if len(records) == 1:
            return next(iter(records.values()))
        batch: list = []
        for partition_records in records.values():
            batch.extend(partition_records)
        return batch

    def _unreadable(self, err: Exception) -> UnreadableMessage:
        """Without a fetch process: which held partition cannot be read, from which offset."""
        positions = {tp.partition: self.consumer.position(tp) for tp in self.consumer.assignment() if tp.topic == self.topic}
        partition, offset = locate(self._consumer_config, self.topic, positions) or (None, None)
        return unreadable_message(self.topic, partition, offset, f"{type(err).__name__}: {err}")

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=self._listener)
        self._subscribed = True
        # Know the topic's partitions before the first join: a leader that assigns without
        # them joins again as soon as they are known (a second rebalance at every start),
        # and kafka-python can lose that second join's assignment when a poll times out
        # in the middle of it.
        try:
            self.consumer.partitions_for_topic(self.topic)
        except KafkaError as err:
            log.debug("no metadata for %s yet: %r", self.topic, err)

    def _poll_fetched(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        """The next batch from the fetch process; this process's consumer only keeps the
        group membership (its partitions are paused) and notes rebalances."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._keep_membership(deadline)
                held = self.consumer.assignment()
                unpaused = held - self.consumer.paused()
                if unpaused:
                    self.consumer.pause(*unpaused)
            except KafkaError as err:
                raise TransportError(f"the consumer group failed: {err}") from err
            if self._listener.events:
                return ()  # the worker handles the rebalance (and seeks) first
            self._fetcher.hold(tp.partition for tp in held if tp.topic == self.topic)  # type: ignore[union-attr]
            batch = self._fetcher.take(max_records, min(0.1, max(0.0, deadline - time.monotonic())))  # type: ignore[union-attr]
            if batch is not None:
                self._positions[batch.partition] = batch.offsets[-1] + 1
                self._last_batch = time.monotonic()
                return batch
            if time.monotonic() >= deadline:
                return ()

    def rebalance_events(self) -> list[tuple[str, list[int]]]:
        events, self._listener.events = self._listener.events, []
        return events

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic)

    def fetching(self) -> bool:
        return self._fetcher is None or self._fetcher.ready

    def behind(self) -> dict[int, int] | None:
        if self._fetcher is not None:
            lag = self._fetcher.lag(timeout_s=5.0)
        else:
            held = [tp for tp in self.consumer.assignment() if tp.topic == self.topic]
            lag = lag_of(self.consumer, held, timeout_s=5.0)
        return None if lag is None else {p: n for p, n in lag.items() if n > 0}

    def seek(self, partition: int, offset: int) -> None:
        if self._fetcher is None:
            self.consumer.seek(TopicPartition(self.topic, partition), offset)
            return
        self._fetcher.seek(partition, offset)
        self._positions[partition] = offset

    def committed_offset(self, partition: int) -> int | None:
        self._land()
        try:
            committed = self.consumer.committed(TopicPartition(self.topic, partition))
        except KafkaError as err:
            raise TransportError(f"reading the committed offset of partition {partition} failed: {err}") from err
        if committed is not None:
            self._floors[partition] = max(committed, self._floors.get(partition, 0))
        return committed

    def seek_committed(self, partition: int) -> None:
        tp = TopicPartition(self.topic, partition)
        committed = self.committed_offset(partition)
        if self._fetcher is not None:
            self._fetcher.seek(partition, committed)
            if committed is None:
                self._positions.pop(partition, None)  # nothing to commit until something is taken
            else:
                self._positions[partition] = committed
        elif committed is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed)

    def close(self) -> None:
        """Abort what is uncommitted, leave the group and release the clients; never raises."""
        self._land_dropping_held()
        if self._in_transaction:
            try:
                within(10.0, self.producer.abort_transaction)
            except (TimeoutError, KafkaError) as err:
                log.warning("could not abort the open transaction at close (%r); the broker aborts it on timeout", err)
        if self._fetcher is not None:
            self._fetcher.close()
        if self._watch is not None:
            self._watch.close()
        for close in (lambda: self.producer.close(timeout=5), lambda: self.consumer.close(autocommit=False)):
            try:
                within(15.0, close)
            except (TimeoutError, KafkaError) as err:
                log.warning("closing a Kafka client failed: %r", err)
