"""The embedded transport: one process, one machine, no broker.

Messages come from any iterable of bytes (a file's lines, a generator), as
partition 0 with the line number as offset; everything sent is kept per
topic in memory and handed to an optional callback as it is sent, so a
command can print decisions as they happen. With a :class:`DirectoryStore`
its checkpoints go to a local directory, and a later run over the same input
resumes where they end.

>>> t = EmbeddedTransport([b'{"x": {}}', b'{"x": {}}', b'{"x": {}}'])
>>> [m.offset for m in t.poll(2, 0)], [m.offset for m in t.poll(2, 0)], t.poll(2, 0)
([0, 1], [2], [])
>>> t.send("out", b"k", b"v")
>>> t.topics["out"][0].value
b'v'
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Sequence

from stream_cd.errors import StateError
from stream_cd.state.newest import Opener, Version, newest_versions
from stream_cd.transport import Checkpoint, Message

__all__ = ["EmbeddedTransport", "DirectoryStore"]


class DirectoryStore:
    """Checkpoints as files, one per store key (a ring slot of a state record), each
    replaced atomically. Each file starts with the store's write sequence, so that
    reading gives the versions in the order they were written, as a Kafka partition does.

    >>> import tempfile
    >>> path = tempfile.mkdtemp()
    >>> store = DirectoryStore(path)
    >>> store.save([Checkpoint("s0/model:shop/eu", b"v1", (0,))]); store.save([Checkpoint("s1/model:shop/eu", b"v2", (0,))])
    >>> list(DirectoryStore(path).records())
    [('s0/model:shop/eu', 0, b'v1'), ('s1/model:shop/eu', 1, b'v2')]
    >>> store.save([Checkpoint("s0/model:shop/eu", None, (0,))])  # a tombstone deletes the slot
    >>> [key for key, _, _ in store.records()]
    ['s1/model:shop/eu']
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StateError(f"cannot use checkpoint directory {self.path}: {err}") from None
        self._next = 1 + max((seq for _, seq, _ in self.records()), default=-1)

    def _file(self, key: str) -> Path:
        return self.path / (urllib.parse.quote(key, safe="") + ".ckpt")

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Write each record crash-safely: the new version goes to a temporary file that is
        synced, then atomically replaces the slot's file; a tombstone removes it."""
        for cp in checkpoints:
            target = self._file(cp.key)
            if cp.blob is None:
                target.unlink(missing_ok=True)
                continue
            tmp = target.with_suffix(".tmp")
            with open(tmp, "wb") as handle:
                handle.write(self._next.to_bytes(8, "big") + cp.blob)
                handle.flush()
                os.fsync(handle.fileno())
            self._next += 1
            os.replace(tmp, target)
        if checkpoints:
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def records(self) -> Iterator[tuple[str, int, bytes]]:
        """``(store key, sequence, blob)`` of every stored version, oldest first."""
        found = []
        for file in self.path.glob("*.ckpt"):
            data = file.read_bytes()
            found.append((int.from_bytes(data[:8], "big"), urllib.parse.unquote(file.stem), data[8:]))
        for seq, key, blob in sorted(found):
            yield key, seq, blob


class EmbeddedTransport:
    """In-process transport over an iterable of message values."""

    def __init__(
        self,
        source: Iterable[bytes],
        topic: str = "stream-cd.events",
        on_send: Callable[[Message], None] | None = None,
        keep: bool = True,
        clock: Callable[[], int] | None = None,
        store: DirectoryStore | None = None,
    ) -> None:
        self._source = iter(source)
        self.topic = topic
        self.on_send = on_send
        self.keep = keep
        self._clock = clock or (lambda: 0)
        self.store = store
        self.position = 0
        self.committed = 0
        self.topics: dict[str, list[Message]] = defaultdict(list)
        self._read: list[bytes] = []  # values handed out since the last commit, to seek back within
        self._again: list[bytes] = []  # values to hand out again before reading on
        self._events: list[tuple[str, list[int]]] = []
        self._started = False
        self._landed = 0

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        if not self._started:
            self._started = True
            if self.store is not None:
                self._events.append(("assigned", [0]))
                return []  # the worker restores and seeks before the first message
        batch = []
        now = self._clock()
        again, self._again = self._again[:max_records], self._again[max_records:]
        for value in itertools.chain(again, itertools.islice(self._source, max_records - len(again))):
            batch.append(Message(self.topic, 0, self.position, now, None, value))
            self._read.append(value)
            self.position += 1
        return batch

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        log = self.topics[topic]
        message = Message(topic, 0, len(log), self._clock(), key, value, tuple(headers or ()))
        if self.keep:
            log.append(message)
        if self.on_send is not None:
            self.on_send(message)

    def commit(self, checkpoints: Sequence[Checkpoint] = (), *, wait: bool = True) -> None:
        if checkpoints and self.store is not None:
            self.store.save(checkpoints)
        self.committed = self.position
        self._read.clear()
        self._landed += 1

    def landed(self) -> int:
        """Commits made so far: each lands as it is made."""
        return self._landed

    def rebalance_events(self) -> list[tuple[str, list[int]]]:
        events, self._events = self._events, []
        return events

    def fetching(self) -> bool:
        return True

    def behind(self) -> dict[int, int]:
        """Nothing: an empty poll means the input is read to its end."""
        return {}

    def assignment(self) -> list[int]:
        return [0]

    def abort(self) -> None:
        """Nothing to abort: the embedded transport's commits cannot fail."""

    def reset(self) -> None:
        """Nothing to reset: the embedded transport's commits cannot fail."""

    def committed_offset(self, partition: int) -> int | None:
        return self.committed or None

    def seek_committed(self, partition: int) -> None:
        self.seek(partition, self.committed)

    def load_checkpoints(self, partitions: Sequence[int], opener: Opener,
                         older: Mapping[str, int] | None = None) -> dict[str, Version]:
        return newest_versions(self.store.records(), opener, older) if self.store is not None else {}

    def seek(self, partition: int, offset: int) -> None:
        """Resume at ``offset``: forward by skipping input, back no further than the last commit."""
        if offset < self.committed:
            raise StateError(f"cannot seek the embedded input back to {offset}, before its last commit at {self.committed}")
        if offset < self.position:
            keep = offset - self.committed
            self._again = self._read[keep:] + self._again
            del self._read[keep:]
        else:
            skip = offset - self.position
            dropped, self._again = self._again[:skip], self._again[skip:]
            for _ in itertools.islice(self._source, skip - len(dropped)):
                pass
        self.position = offset

    def close(self) -> None:
        pass
