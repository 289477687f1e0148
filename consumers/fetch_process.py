"""Fetching and decoding in a second process, so the worker's own process only learns.

kafka-python parses record batches in pure Python, a few microseconds per
record, and decoding and validating an event's JSON costs about one more; in the
worker's process that time comes straight off learning. A fetch process does
both instead, on the other core:

* The worker's own consumer stays the group member: it joins, is assigned
  partitions, and commits their offsets (or sends them to the transaction), but
  its partitions are paused, so it fetches nothing.
* The fetch process reads the partitions the worker holds with a consumer of its
  own, outside any group, from wherever the worker seeks them. It decodes every
  message with :func:`stream_cd.events.decode_event` and sends the worker
  pickled batches of one partition through a pipe. Feature names and model keys
  cross once, in a "strings" message ahead of the first batch that holds them;
  batches then refer to the worker's own copies (:mod:`consumers.batch_pickle`).
* Every seek is numbered. A batch carries the number its partition had when it
  was fetched, and the worker drops batches of an older one, so nothing fetched
  before a rollback or a rebalance is processed after it.

The pipe is the flow control: when the worker falls behind, the fetch process
waits to send. When the worker dies, the fetch process sees its command pipe
close and exits.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import multiprocessing
import pickle
import signal
import time
from collections import deque
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from consumers.batch_pickle import PROTOCOL, BatchPickler, BatchUnpickler
from consumers.unreadable import READ_ERRORS, locate, unreadable_message
from stream_cd.errors import InvalidEvent, TransportError
from stream_cd.events import decode_event
from stream_cd.transport import DecodedBatch

__all__ = ["Fetcher"]

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # several batches fit, so the fetch process writes them while the worker learns
# Most messages in one batch sent. A small batch is still in the CPU's caches when the
# worker learns from it, right after unpickling it; one of 2,000 is not, which costs
# the worker about a twentieth of its rate on a logreg pair. Side by side on that pair,
# batches of 64, 125, 250 and 500 gave the worker 0.775, 0.787, 0.754 and 0.748 of the
# bare loop's rate (medians of 4-9 runs).
SEND_RECORDS = 125


class Fetcher:
    """The worker's end of a fetch process reading ``topic``.

    ``consumer_config`` is the worker's consumer configuration; the fetch process
    drops its group settings and keeps the rest. It sends batches of at most
    ``max_records`` (and :data:`SEND_RECORDS`) messages.
    """

    def __init__(self, consumer_config: dict[str, Any], topic: str, *, max_records: int, max_event_bytes: int) -> None:
        config = {k: v for k, v in consumer_config.items() if k not in _GROUP_SETTINGS}
        config["client_id"] = f"{consumer_config.get('client_id', 'stream-cd')}-fetch"
        ctx = multiprocessing.get_context("spawn")  # kafka-python's threads do not survive a fork
        self.topic = topic
        self._data, data_end = ctx.Pipe(duplex=False)
        command_end, self._commands = ctx.Pipe(duplex=False)
        _widen(data_end)
        self._process = ctx.Process(
            target=_run,
            args=(config, topic, min(max_records, SEND_RECORDS), max_event_bytes, command_end, data_end),
            name="stream-cd-fetch",
            daemon=True,
        )
        self._process.start()
        data_end.close()
        command_end.close()
        self._epochs: dict[int, int] = {}  # partition -> number of its last seek
        self._last_epoch = 0
        self.ready = False  # the fetch process has started and has its consumer
        self._ready: deque[DecodedBatch] = deque()  # received, current, not handed out yet
        self._asked = 0  # number of the last question about the partitions' lag
        self._answer: tuple[int, dict[int, int] | None] = (0, None)
        self._unpickler = BatchUnpickler()

    # -- what the worker asks for ---------------------------------------------------------

    def seek(self, partition: int, offset: int | None) -> None:
        """Fetch ``partition`` from ``offset`` on (None: from its start); forget what was
        fetched of it before."""
        self._last_epoch += 1
        self._epochs[partition] = self._last_epoch
        self._forget({partition})
        self._send(("seek", partition, offset, self._last_epoch))

    def hold(self, partitions: Iterable[int]) -> None:
        """Stop fetching every partition not in ``partitions`` (given up in a rebalance)."""
        gone = self._epochs.keys() - set(partitions)
        if gone:
            for partition in gone:
                del self._epochs[partition]
            self._forget(gone)
            self._send(("drop", sorted(gone)))

    def take(self, max_records: int, timeout_s: float) -> DecodedBatch | None:
        """The next batch fetched since its partition's last seek, of at most ``max_records``
        messages; None when none comes within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self._ready:
            if not self._data.poll(max(0.0, deadline - time.monotonic())):
                return None
            self._receive()
        batch = self._ready.popleft()
        if len(batch) > max_records:
            batch, rest = batch.split(max_records)
            self._ready.appendleft(rest)
        return batch

    def lag(self, timeout_s: float) -> dict[int, int] | None:
        """How many messages of each held partition are not taken yet: those the fetch
        process has not read (it asks the broker for the partitions' ends) and those
        read and waiting here. None when the answer does not come within ``timeout_s``."""
        self._asked += 1
        asked = self._asked
        self._send(("lag", asked))
        deadline = time.monotonic() + timeout_s
        while self._answer[0] != asked:
            if not self._data.poll(max(0.0, deadline - time.monotonic())):
                return None
            self._receive()
        unread = self._answer[1]
        if unread is None:
            return None
        for batch in self._ready:  # read, and waiting to be taken
            unread[batch.partition] = unread.get(batch.partition, 0) + len(batch)
        return {p: n for p, n in unread.items() if p in self._epochs}

    def has_batch(self) -> bool:
        """Whether a batch (or a message about one) is waiting to be taken."""
        return bool(self._ready) or self._data.poll(0)

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the fetch process has started (it takes a second or two); whether it has."""
        deadline = time.monotonic() + timeout_s
        while not self.ready and self._data.poll(max(0.0, deadline - time.monotonic())):
            self._receive()
        return self.ready

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the fetch process; never raises."""
        self._data.close()  # one waiting to send a batch gets a broken pipe and ends at once
        try:
            self._commands.send(("stop",))
        except OSError:
            pass
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout_s)
        self._commands.close()

    # -- the pipes ------------------------------------------------------------------------

    def _send(self, command: tuple) -> None:
        try:
            self._commands.send(command)
        except OSError as err:
            raise TransportError(f"the fetch process is gone ({self._exit()})") from err

    def _receive(self) -> None:
        try:
            blob = self._data.recv_bytes()
        except (EOFError, OSError) as err:
            raise TransportError(f"the fetch process stopped ({self._exit()})") from err
        message = _unpickle(self._unpickler, blob)
        if message[0] == "strings":
            self._unpickler.add(message[1])
            return
        if message[0] == "ready":
            self.ready = True
            return
        if message[0] == "lag":
            self._answer = (message[1], message[2])
            return
        if message[0] == "error":
            raise TransportError(f"the fetch process failed: {message[1]}")
        if message[0] == "unreadable":  # no retry reads it: the worker stops, saying where
            raise unreadable_message(self.topic, *message[1:])
        _, partition, epoch, offsets, timestamps, keys, values, events = message
        if self._epochs.get(partition) == epoch:
            self._ready.append(DecodedBatch(self.topic, partition, offsets, timestamps, keys, values, events))

    def _forget(self, partitions: set[int]) -> None:
        if self._ready:
            self._ready = deque(b for b in self._ready if b.partition not in partitions)

    def _exit(self) -> str:
        self._process.join(1.0)
        code = self._process.exitcode
        return "still running" if code is None else f"exit code {code}"


def _unpickle(unpickler: BatchUnpickler, blob: bytes) -> Any:
    """Unpickle a batch with the cyclic garbage collector paused: thousands of new objects,
    all alive, would set it off again and again for nothing (three times the cost)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return unpickler.loads(blob)
    finally:
        if enabled:
            gc.enable()


_GROUP_SETTINGS = {"group_id", "session_timeout_ms", "heartbeat_interval_ms", "enable_auto_commit"}


def _widen(conn: Connection) -> None:
    """Ask for a pipe buffer several batches fit in (Linux); with the default 64 kB both
    processes take turns on every batch."""
    try:
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError) as err:  # not Linux, or above /proc/sys/fs/pipe-max-size
        log.debug("pipe buffer left at its default: %r", err)


# -- the fetch process ----------------------------------------------------------------------


def _run(config: dict[str, Any], topic: str, max_records: int, max_event_bytes: int, commands: Connection, out: Connection) -> None:
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
        the partition's end (the last stable offset: what a read_committed reader can
        read), or None when the broker does not say. The position has passed
        transaction markers as well, so a partition read to its end has none."""
        tps = [TopicPartition(self.topic, p) for p in self.epochs]
        try:
            ends = self.consumer.end_offsets(tps, timeout_ms=2_000)
            positions = {tp: self.consumer.position(tp, timeout_ms=2_000) for tp in tps}
        except Exception as err:  # noqa: BLE001 - a broker that is away: unknown
            log.warning("fetch process: cannot read the partitions' ends (%r)", err)
            return None
        if any(position is None for position in positions.values()):
            return None
        return {tp.partition: max(0, end - positions[tp]) for tp, end in ends.items()}

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
