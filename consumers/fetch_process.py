"""The fetch process: the second process of a worker, which reads and decodes its partitions.

:class:`consumers.fetcher.Fetcher` starts it and is the worker's end of its two pipes
(the module docstring there tells the whole design). Here is the other end: a
consumer of its own, outside any group, that reads the partitions the worker seeks
from where it seeks them, decodes each message, and sends pickled batches; it
answers how far each partition is behind its end, and replaces its consumer when
that stops reading though the partitions have more.
"""

from __future__ import annotations

import gc
import logging
import pickle
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from consumers.batch_pickle import PROTOCOL, BatchPickler
from consumers.unreadable import READ_ERRORS, locate
from stream_cd.errors import InvalidEvent
from stream_cd.events import decode_event

__all__ = ["run", "lag_of", "SEND_RECORDS", "STALL_S"]

log = logging.getLogger(__name__)

# Most messages in one batch sent. A small batch is still in the CPU's caches when the
# worker learns from it, right after unpickling it; one of 2,000 is not, which costs
# the worker about a twentieth of its rate on a logreg pair. Side by side on that pair,
# batches of 64, 125, 250 and 500 gave the worker 0.775, 0.787, 0.754 and 0.748 of the
# bare loop's rate (medians of 4-9 runs).
SEND_RECORDS = 125


def run(config: dict[str, Any], topic: str, max_records: int, max_event_bytes: int, commands: Connection, out: Connection) -> None:
    """The fetch process: read the partitions the worker seeks (``commands``), send it
    decoded batches of at most ``max_records`` messages (``out``), until told to stop or
    the worker is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle; it stops this process
    reader = None
    try:
        reader = _Reader(config, topic)
        pickler = BatchPickler()
        # Every batch makes thousands of objects that live until it is sent; with the default
        # threshold the collector runs through them dozens of times per batch.
        gc.freeze()
        gc.set_threshold(50_000, 10, 10)
        reader.warm_up()
        _tell(out, "ready")
        while _obey(reader, commands, out):
            if not reader.epochs:
                continue
            try:
                fetched = reader.poll(max_records)
            except READ_ERRORS as err:
                _tell(out, "unreadable", *reader.unreadable(), f"{type(err).__name__}: {err}")
                return
            for tp, records in fetched.items():
                epoch = reader.epochs.get(tp.partition)
                if epoch is not None:
                    batch = _batch(tp.partition, epoch, records, max_event_bytes)
                    strings = pickler.share(batch[-1])
                    if strings is not None:  # before the batch that refers to them
                        _tell(out, "strings", strings)
                    out.send_bytes(pickler.dumps(batch))
            reader.heal_if_stalled()
    except (EOFError, BrokenPipeError):
        pass  # the worker is gone
    except Exception as err:  # noqa: BLE001 - reported to the worker, which starts over
        try:
            _tell(out, "error", repr(err))
        except OSError:
            pass
    finally:
        if reader is not None:
            reader.close()


def _tell(out: Connection, *message: Any) -> None:
    """Send a message other than a batch. Protocol 3 as well: the worker unpickles every
    message with the table's memo (see :data:`consumers.batch_pickle.PROTOCOL`)."""
    out.send_bytes(pickle.dumps(message, protocol=PROTOCOL))


def _obey(reader: "_Reader", commands: Connection, out: Connection) -> bool:
    """Apply the worker's commands (and answer its questions); False when told to stop.
    Waits a little for one when no partition is held."""
    wait = 0.0 if reader.epochs else 0.2
    while commands.poll(wait):
        wait = 0.0
        command = commands.recv()
        if command[0] == "stop":
            return False
        if command[0] == "seek":
            reader.seek(*command[1:])
        elif command[0] == "drop":
            reader.drop(command[1])
        elif command[0] == "lag":
            _tell(out, "lag", command[1], reader.lag())
    return True


STALL_S = 3.0  # no records for this long while behind the partitions' ends: the consumer is stuck


class _Reader:
    """The fetch process's consumer, and per held partition the number of the worker's
    last seek and the next offset to read.

    kafka-python's consumer does not always come back from a broker restart: it then
    returns nothing, for ever, though the partitions have more. :meth:`heal_if_stalled`
    notices and starts a new consumer where the old one stopped.
    """

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.config = config
        self.topic = topic
        self.consumer = KafkaConsumer(**config)
        self.epochs: dict[int, int] = {}
        self.next: dict[int, int | None] = {}  # None: from the partition's start
        self.last_data = time.monotonic()
        self.last_check = 0.0
        self.healed_at: tuple | None = None  # (ends, next) when last replaced: never twice for the same

    def warm_up(self) -> None:
        """Learn the topic's metadata as the fetch process starts: else the first fetch after
        the first seek waits ~80 ms for it. (kafka-python waits for it without a timeout;
        with no broker there is nothing to fetch anyway, and ``close`` ends the process.)"""
        try:
            self.consumer.partitions_for_topic(self.topic)
        except Exception as err:  # noqa: BLE001 - only a head start: fetching asks again
            log.debug("fetch process: no head start on %s: %r", self.topic, err)

    def _assign(self) -> None:
        self.consumer.assign([TopicPartition(self.topic, p) for p in self.epochs])

    def _position(self, partition: int) -> None:
        tp, offset = TopicPartition(self.topic, partition), self.next[partition]
        if offset is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)

    def seek(self, partition: int, offset: int | None, epoch: int) -> None:
        new = partition not in self.epochs
        self.epochs[partition] = epoch
        if new:
            self._assign()
        self.next[partition] = offset
        self._position(partition)
        self.last_data = time.monotonic()

    def drop(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.epochs.pop(partition, None)
            self.next.pop(partition, None)
        self._assign()

    def poll(self, max_records: int) -> dict:
        # A short wait: when kafka-python finds no fetch in flight between two responses it
        # sleeps for the whole timeout (up to retry_backoff_ms), which at 100 ms halves the rate.
        records = {tp: batch for tp, batch in self.consumer.poll(timeout_ms=10, max_records=max_records).items() if batch}
        if records:
            self.last_data = time.monotonic()
            for tp, batch in records.items():
                if tp.partition in self.next:
                    self.next[tp.partition] = batch[-1].offset + 1
        return records

    def unreadable(self) -> tuple[int | None, int | None]:
        """After a read error: the held partition that cannot be read and from which offset
        (see :func:`consumers.unreadable.locate`), or (None, None)."""
        positions = {p: self.consumer.position(TopicPartition(self.topic, p)) for p in self.epochs}
        return locate(self.config, self.topic, positions) or (None, None)

    def lag(self) -> dict[int, int] | None:
        """Per held partition, how many messages lie between this consumer's position and
        the partition's end (see :func:`lag_of`)."""
        return lag_of(self.consumer, [TopicPartition(self.topic, p) for p in self.epochs], timeout_s=2.0)

    def heal_if_stalled(self) -> None:
        now = time.monotonic()
        if now - self.last_data < STALL_S or now - self.last_check < STALL_S:
            return
        self.last_check = now
        lag = self.lag()
        behind = lag is None or any(n > 0 for n in lag.values())
        state = (lag, dict(self.next))
        if not behind or (lag is not None and state == self.healed_at):
            return
        log.warning("fetch process: nothing read for %.0f s though the partitions have more; starting a new consumer", now - self.last_data)
        self.healed_at = state
        self.close()
        self.consumer = KafkaConsumer(**self.config)
        self._assign()
        for partition in self.epochs:
            self._position(partition)
        self.last_data = time.monotonic()

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False, timeout_ms=1_000)
        except Exception as err:  # noqa: BLE001 - it is being thrown away
            log.debug("closing the fetch consumer failed: %r", err)


def lag_of(consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_s: float) -> dict[int, int] | None:
    """Per partition, how many messages lie between ``consumer``'s position and the
    partition's end (the last stable offset: what a read_committed reader can read), or
    None when the broker does not say within ``timeout_s`` (all calls together) or a
    position is unknown. The position passes transaction markers as well, so a
    partition read to its end has none."""
    deadline = time.monotonic() + timeout_s

    def left_ms() -> int:
        return max(1, int(1000 * (deadline - time.monotonic())))

    try:
        ends = consumer.end_offsets(partitions, timeout_ms=left_ms())
        positions = {tp: consumer.position(tp, timeout_ms=left_ms()) for tp in partitions}
    except Exception as err:  # noqa: BLE001 - a broker that is away: unknown
        log.warning("cannot read how far the partitions are behind their ends (%r)", err)
        return None
    if any(position is None for position in positions.values()):
        return None
    return {tp.partition: max(0, end - positions[tp]) for tp, end in ends.items()}


def _batch(partition: int, epoch: int, records: list, max_event_bytes: int) -> tuple:
    """What the worker gets of ``records``: their events (or why they are not events) and
    the original keys and values, which a dead letter carries (a valid event can still be
    rejected later, by its model key's schema or task)."""
    events: list = []
    for record in records:
        try:
            events.append(decode_event(record.value, max_event_bytes))
        except InvalidEvent as err:
            events.append(err)
    return (
        "batch",
        partition,
        epoch,
        [r.offset for r in records],
        [r.timestamp for r in records],
        [r.key for r in records],
        [r.value for r in records],
        events,
    )
