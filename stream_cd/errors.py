"""The exceptions stream-cd raises, all under one root.

::

    StreamCDError
     ├── ConfigError          a bad flag, spec or configuration value
     ├── InvalidEvent         a message that is not a valid event (carries a reason)
     ├── BrokerError          the local Kafka broker could not be set up, started or stopped
     ├── TransportError       the message transport (Kafka or embedded) failed
     ├── StateError           model state could not be stored or restored
     └── UnreadableMessage    an input message no retry can read (a codec, a corrupt record)

Catch :class:`StreamCDError` to handle anything the product raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "StreamCDError",
    "ConfigError",
    "InvalidEvent",
    "BrokerError",
    "TransportError",
    "StateError",
    "UnreadableMessage",
]


class StreamCDError(Exception):
    """Root of every error stream-cd raises on purpose."""


class ConfigError(StreamCDError, ValueError):
    """A flag, model spec or configuration value is wrong; the message says which and what to do."""


class InvalidEvent(StreamCDError, ValueError):
    """A message is not a valid event.

    >>> err = InvalidEvent("x is missing")
    >>> err.reason
    'x is missing'
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerError(StreamCDError, RuntimeError):
    """The local Apache Kafka broker could not be prepared, started, reached or stopped."""


class TransportError(StreamCDError, RuntimeError):
    """Reading from or writing to the message transport failed."""


class StateError(StreamCDError, RuntimeError):
    """Model state could not be saved, verified or restored."""


class UnreadableMessage(StreamCDError, RuntimeError):
    """A message of the input cannot be read at all (its batch's codec cannot be decoded,
    a corrupt record): reading it again fails the same way, so the worker stops instead
    of retrying. Not a :class:`TransportError`, which the worker recovers from.

    >>> err = UnreadableMessage("cannot read it", "events", 2, 41)
    >>> (err.topic, err.partition, err.offset)
    ('events', 2, 41)
    """

    def __init__(self, message: str, topic: str, partition: int | None, offset: int | None) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset
