"""The embedded transport: one process, one machine, no broker.

Messages come from any iterable of bytes (a file's lines, a generator);
everything sent is kept per topic in memory and handed to an optional
callback as it is sent, so a command can print decisions as they happen.

>>> t = EmbeddedTransport([b'{"x": {}}', b'{"x": {}}', b'{"x": {}}'])
>>> [m.offset for m in t.poll(2, 0)], [m.offset for m in t.poll(2, 0)], t.poll(2, 0)
([0, 1], [2], [])
>>> t.send("out", b"k", b"v")
>>> t.topics["out"][0].value
b'v'
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Sequence

from stream_cd.transport import Message

__all__ = ["EmbeddedTransport"]


class EmbeddedTransport:
    """In-process transport over an iterable of message values."""

    def __init__(
        self,
        source: Iterable[bytes],
        topic: str = "stream-cd.events",
        on_send: Callable[[Message], None] | None = None,
        keep: bool = True,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._source = iter(source)
        self.topic = topic
        self.on_send = on_send
        self.keep = keep
        self._clock = clock or (lambda: 0)
        self.position = 0
        self.committed = 0
        self.topics: dict[str, list[Message]] = defaultdict(list)

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        batch = []
        now = self._clock()
        for value in itertools.islice(self._source, max_records):
            batch.append(Message(self.topic, 0, self.position, now, None, value))
            self.position += 1
        return batch

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        log = self.topics[topic]
        message = Message(topic, 0, len(log), self._clock(), key, value, tuple(headers or ()))
        if self.keep:
            log.append(message)
        if self.on_send is not None:
            self.on_send(message)

    def commit(self) -> None:
        self.committed = self.position

    def close(self) -> None:
        pass
