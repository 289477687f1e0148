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

This module is the worker's end; the fetch process itself is
:mod:`consumers.fetch_process`.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any

from consumers.batch_pickle import BatchUnpickler
from consumers.fetch_process import SEND_RECORDS, run
from consumers.unreadable import unreadable_message
from stream_cd.errors import TransportError
from stream_cd.transport import DecodedBatch

__all__ = ["Fetcher"]

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # several batches fit, so the fetch process writes them while the worker learns


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
            target=run,
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
        read and waiting here. None when that cannot be told: the answer does not come
        within ``timeout_s``, or the broker does not say (see :func:`lag_of`)."""
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
