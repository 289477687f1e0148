"""The I/O seam between the worker loop and a message transport.

The same loop (:mod:`stream_cd.worker`) runs on Kafka (``consumers.kafka_transport``)
and on the in-process :class:`~stream_cd.embedded.EmbeddedTransport`. A
transport hands out batches of :class:`Message` (Kafka's ``ConsumerRecord``
fits the same shape), takes output messages, and commits: it makes every sent
message durable first, then records that everything polled so far is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

__all__ = ["Message", "Transport", "Topics", "DEAD_LETTER_REASON", "DEAD_LETTER_ORIGIN"]

DEAD_LETTER_REASON = "stream-cd.reason"
DEAD_LETTER_ORIGIN = "stream-cd.origin"


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


class Transport(Protocol):
    """What the worker loop needs from a transport."""

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        """Up to ``max_records`` new messages; empty after ``timeout_s`` with none."""

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one output message."""

    def commit(self) -> None:
        """Make sent messages durable, then mark everything polled as processed."""

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
