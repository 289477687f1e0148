"""Produce a recorded event stream to Kafka, keyed by model key, at an optional rate."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream_cd.errors import TransportError
from stream_cd.sources import paced

__all__ = ["replay_to_kafka", "model_key_of"]


def model_key_of(raw: bytes) -> bytes | None:
    """The Kafka key of an event line: its model key, or None when it is not a valid object."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    key = obj.get("key", "default")
    return key.encode() if type(key) is str and key else None


def replay_to_kafka(
    events: Iterable[bytes],
    bootstrap: str,
    topic: str,
    *,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
    client_options: dict | None = None,
) -> int:
    """Send every event to ``topic``; return how many were sent.

    ``rate`` paces the sends at that many events per second. Each message's
    timestamp is its send time, from which latency is measured. ``client_options`` are
    kafka-python settings for a secured cluster.
    """
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, batch_size=256 * 1024,
                                 **(client_options or {}))
    except KafkaError as err:
        raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err
    sent = 0
    try:
        for raw in paced(events, rate):
            producer.send(topic, key=model_key_of(raw), value=raw)
            sent += 1
            if on_sent is not None and sent % 1000 == 0:
                on_sent(1000)
        producer.flush()
    except KafkaError as err:
        raise TransportError(f"replay to {topic!r} failed after {sent} events: {err}") from err
    finally:
        producer.close(timeout=10)
    if on_sent is not None and sent % 1000:
        on_sent(sent % 1000)
    return sent
