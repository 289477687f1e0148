"""The exceptions stream-cd raises, all under one root.

::

    StreamCDError
     ├── ConfigError          a bad flag, spec or configuration value
     ├── InvalidEvent         a message that is not a valid event (carries a reason)
     ├── BrokerError          the local Kafka broker could not be set up, started or stopped
     ├── TransportError       the message transport (Kafka or embedded) failed
     └── StateError           model state could not be stored or restored

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
