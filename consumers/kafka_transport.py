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
partitions, and this process's consumer only keeps the group membership and
commits: kafka-python's record parsing and the JSON decoding then run beside
the learning instead of taking turns with it.

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
from collections.abc import Callable, Mapping, Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.base import MemberState
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.admin import TopicSpec, ensure_topics
from consumers.checkpoints import MAX_CHECKPOINT_BYTES, PARTITIONS_HEADER, committed_records
from consumers.fetcher import Fetcher
from consumers.group_watch import GroupWatch
from consumers.unreadable import READ_ERRORS, locate, unreadable_message
from stream_cd.errors import StateError, TransportError, UnreadableMessage
from stream_cd.events import DEFAULT_MAX_EVENT_BYTES
from stream_cd.state.newest import Opener, Version, newest_versions
from stream_cd.transport import Checkpoint, Message

__all__ = ["KafkaTransport"]

log = logging.getLogger(__name__)


COMMIT_TIMEOUT_S = 60.0
# With a fetch process: how often the group member polls once settled, while batches
# come. A rebalance the group starts is seen sooner (the group watch sees it within a
# second, and the polls wait until this member has joined); this only bounds how late a
# change seen in metadata alone (more partitions) is noticed, which kafka-python refreshes
# every 5 minutes anyway, and keeps inside the group's max.poll.interval (5 minutes). Such a poll usually takes 1-2 ms, but
# on a busy machine now and then 100-250 ms (it hands work to kafka-python's network
# thread and waits for it), and every request fetched meanwhile waits too: once a second,
# that was the worker's whole latency tail at 1,000 requests/s; every 10 s, still 1-2 %
# of requests.
MEMBERSHIP_POLL_S = 60.0
# With nothing fetched for this long, the member polls this often: a poll is what shows
# that the broker went away (then the worker starts over with new clients), and an idle
# worker has no request to delay.
IDLE_MEMBERSHIP_POLL_S = 1.0


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


class _Call:
    """``fn(*args)`` running in a thread of its own, so that the caller can wait for it
    with a limit (kafka-python's transactional calls can wait forever on a coordinator
    that never comes back), or go on while it runs; a call that never returns is left
    to finish, or not, in its thread."""

    def __init__(self, fn, *args) -> None:
        self._box: dict = {}
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="stream-cd-kafka-call", daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._box["result"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            self._box["error"] = err

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, seconds: float):
        """What the call returned, or the exception it raised; TimeoutError if it has not
        returned within ``seconds``."""
        self._thread.join(max(0.0, seconds))
        if self._thread.is_alive():
            raise TimeoutError(f"no answer in {seconds:.0f} s")
        if "error" in self._box:
            raise self._box["error"]
        return self._box.get("result")


def _within(seconds: float, fn, *args):
    """Run ``fn(*args)``, raising TimeoutError if it has not returned in ``seconds``."""
    return _Call(fn, *args).result(seconds)


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
        fetch_process: bool = True,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        before_commit: Callable[[], None] | None = None,
        client_options: dict | None = None,
    ) -> None:
        """``before_commit`` runs in the commit's thread before anything of the commit: it may
        raise :class:`KafkaError`, and the commit then fails. ``client_options`` (kafka-python
        settings: security, SASL, TLS) go to every client, the fetch process's too."""
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
        self._landing: tuple[_Call, float] | None = None  # exactly-once: a commit in flight, its deadline
        self._held: list[tuple] = []  # outputs sent while it flies
        self._landed = 0  # commits landed so far (see landed())
        self._subscribed = False
        self._pending: list = []  # at-least-once: sends not yet known delivered
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
        }
        if self.transactional:
            self._producer_config.update(
                transactional_id=transactional_id,
                transaction_timeout_ms=30_000,
                retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
            )
        try:
            self.consumer = KafkaConsumer(**self._consumer_config)
            self.producer = self._new_producer()
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
        self._land_dropping_held()  # not to leave it running on a producer that is being closed
        if self._fetcher is not None:
            self._fetcher.close()
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

    def _keep_membership(self, deadline: float) -> None:
        """Poll this process's consumer for the group's sake: joins, rebalances, the poll
        interval (heartbeats have their own thread). Anything it fetched is not used.

        kafka-python moves a join on only while poll waits, so it waits while the group is
        unsettled: this member holds no partitions, is not a stable member (``group_metadata``:
        joining, or forgotten by the group), or the coordinator has shown the group rebalancing
        since this member last joined (:mod:`consumers.group_watch`, asked every second; the
        polls then wait until kafka-python's heartbeat, every ``heartbeat_interval_ms``, has
        heard of it too and the member has joined: a few seconds without serving, before a
        rebalance that takes the partitions away anyway). Once settled, a poll without waiting
        every ``MEMBERSHIP_POLL_S`` is enough while batches come (each costs one to two
        milliseconds: every 0.1 s, that was 1-2 % of the worker's time), and every
        ``IDLE_MEMBERSHIP_POLL_S`` when none has come for that long. A settled poll that is
        due waits for a moment with no batch waiting (for at most another ``MEMBERSHIP_POLL_S``,
        still inside max.poll.interval), and for an at-least-once commit in flight, which
        uses the consumer, to land: the worker never stops serving to wait for either.
        """
        settled = bool(self.consumer.assignment()) and self._stable_member()
        now = time.monotonic()
        if settled:
            since = now - self._membership_polled
            idle = now - self._last_batch >= IDLE_MEMBERSHIP_POLL_S
            if since < (IDLE_MEMBERSHIP_POLL_S if idle else MEMBERSHIP_POLL_S):
                return
            if self._landing is not None and not self._landing[0].done() and not self.transactional:
                return
            if since < 2 * MEMBERSHIP_POLL_S and self._fetcher is not None and self._fetcher.has_batch():
                return
        self._land()  # an at-least-once commit in flight uses the consumer
        if not settled:
            self.consumer.poll(timeout_ms=max(1, int(1000 * (deadline - now))))
        else:
            self.consumer.poll(timeout_ms=0)
        self._membership_polled = now

    def _stable_member(self) -> bool:
        """Whether this member is stable in its group and the coordinator has not shown the
        group rebalancing (or without it) since this member's generation began."""
        metadata = self.consumer.group_metadata()
        if metadata.generation_id != self._generation:
            self._generation, self._joined_at = metadata.generation_id, time.monotonic()
        if self._watch is not None:
            self._watch.member_id = metadata.member_id
        if metadata.state != MemberState.STABLE:
            return False
        return self._watch is None or not self._watch.unsettled_since(self._joined_at)

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
        if not self.transactional:
            self._pending.append(future)

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
            if self.transactional:
                if not self.consumer.assignment() and not self._in_transaction:
                    self._landed += 1  # nothing to commit: landed as it is
                    return
                offsets = self._offsets()
                metadata = self.consumer.group_metadata() if offsets else None
                call = _Call(self._commit_transaction, checkpoints, offsets, metadata)
            else:
                pending, self._pending = self._pending, []
                offsets = self._offsets() if self._fetcher is not None else None
                call = _Call(self._commit_at_least_once, pending, offsets)
                wait = wait or self._fetcher is None
        except KafkaError as err:
            raise TransportError(f"commit failed: {err}") from err
        self._landing = (call, time.monotonic() + COMMIT_TIMEOUT_S)
        if wait:
            self._land()

    def _commit_at_least_once(self, pending: list, offsets: dict | None) -> None:
        """In a thread of its own: the outputs sent so far delivered, then ``offsets`` (None:
        the consumer's positions). The worker's thread keeps off the consumer meanwhile
        (see :meth:`_keep_membership`)."""
        if self._before_commit is not None:
            self._before_commit()
        self.producer.flush()
        failed = [f.exception for f in pending if f.failed()]
        if failed:
            raise KafkaError(f"{len(failed)} of {len(pending)} output messages were not delivered: {failed[0]!r}")
        if offsets is None:
            self.consumer.commit()
        elif offsets:
            self.consumer.commit(offsets)

    def _commit_transaction(self, checkpoints: Sequence[Checkpoint], offsets: dict, metadata) -> None:
        """In a thread of its own: uses the producer only (the worker's thread holds back its
        sends meanwhile), never the consumer, which is not thread-safe."""
        if self._before_commit is not None:
            self._before_commit()
        self._begin()
        for cp in checkpoints:
            header = [(PARTITIONS_HEADER, ",".join(map(str, cp.partitions)).encode())]
            for partition in cp.partitions:  # beside the state of each source partition it covers
                self.producer.send(self.checkpoints_topic, key=cp.key.encode(), value=cp.blob, headers=header,
                                   partition=partition)
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

    def load_checkpoints(self, partitions: Sequence[int], opener: Opener,
                         older: Mapping[str, int] | None = None) -> dict[str, Version]:
        """Read the checkpoints partitions of ``partitions`` (the state of a source partition
        is stored in the checkpoints partition of the same number), and nothing else."""
        self._land()
        self._make_room(partitions)
        try:
            records = committed_records(self.bootstrap, self.checkpoints_topic, partitions=partitions,
                                        client_options=self.client_options)
            stream = ((r.key.decode() if r.key else "", r.offset, r.value) for r in self._counted(records))
            return newest_versions(stream, opener, older)
        except (KafkaError, StateError) as err:
            raise TransportError(f"reading checkpoints from {self.checkpoints_topic!r} failed: {err}") from err

    def _make_room(self, partitions: Sequence[int]) -> None:
        """The events topic has grown past the checkpoints topic: add partitions to it, and
        start over with new clients (this producer knows only the partitions it had)."""
        try:
            have = len(self.producer.partitions_for(self.checkpoints_topic) or ())
        except KafkaError as err:
            raise TransportError(f"no metadata for {self.checkpoints_topic!r}: {err}") from err
        need = max(partitions, default=-1) + 1
        if need <= have:
            return
        ensure_topics(self.bootstrap, [TopicSpec(self.checkpoints_topic, partitions=need, check=True, grow=True)],
                      client_options=self.client_options)
        raise TransportError(f"the checkpoints topic {self.checkpoints_topic!r} had {have} partitions, fewer than the "
                             f"events topic's {need}; it now has {need}, and the worker starts over with new clients")

    def _counted(self, records):
        for record in records:
            self.restore_bytes_read += len(record.value or b"") + len(record.key or b"")
            yield record

    def rebalance_events(self) -> list[tuple[str, list[int]]]:
        events, self._listener.events = self._listener.events, []
        return events

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic)

    def fetching(self) -> bool:
        return self._fetcher is None or self._fetcher.ready

    def abort(self) -> None:
        """Abort the open transaction, and a commit in flight that failed; if even that
        fails, start over with new clients."""
        self._land_dropping_held()
        if not self._in_transaction:
            return
        try:
            _within(COMMIT_TIMEOUT_S, self.producer.abort_transaction)
            self._in_transaction = False
        except (TimeoutError, KafkaError) as err:
            log.warning("could not abort the open transaction (%r)", err)
            self.reset()

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
                _within(10.0, self.producer.abort_transaction)
            except (TimeoutError, KafkaError) as err:
                log.warning("could not abort the open transaction at close (%r); the broker aborts it on timeout", err)
        if self._fetcher is not None:
            self._fetcher.close()
        if self._watch is not None:
            self._watch.close()
        for close in (lambda: self.producer.close(timeout=5), lambda: self.consumer.close(autocommit=False)):
            try:
                _within(15.0, close)
            except (TimeoutError, KafkaError) as err:
                log.warning("closing a Kafka client failed: %r", err)
