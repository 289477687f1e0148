"""The I/O seam between the worker loop and a message transport.

The same loop (:mod:`stream_cd.worker`) runs on Kafka (``consumers.kafka_transport``)
and on the in-process :class:`~stream_cd.embedded.EmbeddedTransport`. A
transport hands out batches of :class:`Message` (Kafka's ``ConsumerRecord``
fits the same shape), takes output messages, and commits: every sent message,
then the given checkpoints, then the position after everything polled so far.

After each poll the worker asks for the partitions ``assigned`` or
``revoked`` during it; a transport that stores state also loads the
checkpoints covering partitions, seeks a partition, and aborts what it has not
committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, Sequence

from stream_cd.errors import InvalidEvent
from stream_cd.events import Event
from stream_cd.state.newest import Opener, Version

__all__ = ["Message", "DecodedBatch", "Checkpoint", "Transport", "Topics", "DEAD_LETTER_REASON", "DEAD_LETTER_ORIGIN",
           "DEAD_LETTER_TRUNCATED"]

DEAD_LETTER_REASON = "stream-cd.reason"
DEAD_LETTER_ORIGIN = "stream-cd.origin"  # topic/partition/offset of the message
DEAD_LETTER_TRUNCATED = "stream-cd.truncated"  # the message's full size, when the dead letter holds only its start


@dataclass(slots=True)
class Message:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(slots=True)
class DecodedBatch:
    """Consecutive messages of one partition that the transport has already decoded.

    ``events[i]`` is the event of the message at ``offsets[i]``, or the
    :class:`~stream_cd.errors.InvalidEvent` that rejected it. As a sequence it
    gives the messages themselves, original bytes and all.

    >>> from stream_cd.events import decode_event
    >>> raw = [b'{"x": {"a": 1}}', b'[]']
    >>> batch = DecodedBatch("t", 0, [7, 8], [0, 0], [None, None], raw, [decode_event(raw[0]), InvalidEvent("event is a list")])
    >>> len(batch), batch[1].offset, batch[1].value
    (2, 8, b'[]')
    >>> head, rest = batch.split(1)
    >>> head.offsets, rest.offsets
    ([7], [8])
    """

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    events: list[Event | InvalidEvent]

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Message:
        return Message(self.topic, self.partition, self.offsets[i], self.timestamps[i], self.keys[i], self.values[i])

    def __iter__(self) -> Iterator[Message]:
        return (self[i] for i in range(len(self.offsets)))

    def split(self, n: int) -> tuple["DecodedBatch", "DecodedBatch"]:
        """The first ``n`` messages and the rest."""
        return self._slice(slice(None, n)), self._slice(slice(n, None))

    def _slice(self, part: slice) -> "DecodedBatch":
        columns = (self.offsets, self.timestamps, self.keys, self.values, self.events)
        return DecodedBatch(self.topic, self.partition, *(column[part] for column in columns))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A sealed state record: its store key (a ring slot of the record,
    :mod:`stream_cd.state.records`), its bytes (None: a tombstone, which deletes the
    slot) and the source partitions it covers, beside whose state it is stored."""

    key: str
    blob: bytes | None
    partitions: tuple[int, ...]


class Transport(Protocol):
    """What the worker loop needs from a transport."""

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        """Up to ``max_records`` new messages (a :class:`DecodedBatch` when the transport
        decodes them itself); empty after ``timeout_s`` with none."""

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one output message."""

    def commit(self, checkpoints: Sequence[Checkpoint] = (), *, wait: bool = True) -> None:
        """Make sent messages and ``checkpoints`` durable, then mark everything polled as processed.

        ``wait=False`` allows returning before the commit has landed: it then lands
        while the caller goes on, messages sent meanwhile belong to the next commit, and
        a failure raises :class:`~stream_cd.errors.TransportError` from a later call."""

    def landed(self) -> int:
        """How many calls of :meth:`commit` have landed so far (one with nothing to commit
        counts); a commit that fails never does."""

    def rebalance_events(self) -> list[tuple[str, list[int]]]:
        """``("assigned" | "revoked", partitions)`` in the order they happened since the last call."""

    def assignment(self) -> list[int]:
        """The partitions held now."""

    def fetching(self) -> bool:
        """Whether messages of the held partitions that are there will come (False while a
        fetch process is still starting): until then, nothing new is not idleness."""

    def behind(self) -> dict[int, int] | None:
        """How many messages each held partition has that have not been read yet (only
        those with some), or None when that cannot be known now. Nothing new for a
        while is idleness only when nothing is behind: else the reading is stuck."""

    def abort(self) -> None:
        """Drop every output and checkpoint sent since the last commit."""

    def reset(self) -> None:
        """Start over after a failed commit: drop what is uncommitted and rejoin; held
        partitions are announced as ``assigned`` again."""

    def committed_offset(self, partition: int) -> int | None:
        """The last committed offset of ``partition`` (None: nothing committed yet)."""

    def seek_committed(self, partition: int) -> None:
        """Resume ``partition`` at its last committed offset (or its start)."""

    def load_checkpoints(self, partitions: Sequence[int], opener: Opener,
                         older: Mapping[str, int] | None = None) -> dict[str, Version]:
        """Per state record stored beside ``partitions``, the newest version that ``opener``
        accepts (see :func:`stream_cd.state.newest.newest_versions`), reading the store
        once with memory for one version of each record."""

    def seek(self, partition: int, offset: int) -> None:
        """Resume ``partition`` at ``offset``."""

    def close(self) -> None:
        """Release the transport's resources."""


@dataclass(frozen=True)
class Topics:
    """Topic names derived from one prefix, so pipelines can share a cluster.

    >>> t = Topics("shop")
    >>> t.events, t.decisions, t.dead_letter, t.checkpoints, t.predictions
    ('shop.events', 'shop.decisions', 'shop.dead-letter', 'shop.checkpoints', 'shop.predictions')
    >>> Topics("shop", events="raw-clicks").events
    'raw-clicks'
    """

    prefix: str = "stream-cd"
    events: str = ""

    def __post_init__(self) -> None:
        if not self.events:
            object.__setattr__(self, "events", f"{self.prefix}.events")

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}.checkpoints"

    @property
    def predictions(self) -> str:
        return f"{self.prefix}.predictions"
