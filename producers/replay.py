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
    """Send every event to ``topic``; return how many were sent, once the broker has them all.

    ``rate`` paces the sends at that many events per second. Each message's
    timestamp is its send time, from which latency is measured. ``client_options`` are
    kafka-python settings for a secured cluster.

    An event the broker did not take in the end (kafka-python retries, then gives
    up and only reports it to the send's future) stops the replay with a
    :class:`TransportError` that says how many were lost and which came first.
    """
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, batch_size=256 * 1024,
                                 **(client_options or {}))
    except KafkaError as err:
        raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err
    sent = 0
    failed: list[tuple[int, BaseException]] = []  # (event number, error), from the producer's I/O thread
    error: KafkaError | None = None
    try:
        for raw in paced(events, rate):
            future = producer.send(topic, key=model_key_of(raw), value=raw)
            future.add_errback(lambda err, number=sent + 1: failed.append((number, err)))
            sent += 1
            if on_sent is not None and sent % 1000 == 0:
                on_sent(1000)
            if failed:
                break  # the broker refuses or is gone: sending more would lose more
        producer.flush()
    except KafkaError as err:
        error = err
    finally:
        producer.close(timeout=10)  # what is still in flight lands, or reports its failure
    if error is not None and not failed:  # else the refusals say more (a flush may give up on a batch it split)
        raise TransportError(f"replay to {topic!r} failed after {sent} events: {error}") from error
    if failed:
        first, err = min(failed, key=lambda f: f[0])
        raise TransportError(f"{len(failed)} of the {sent} events sent to {topic!r} were not delivered ({err}); "
                             f"the first of them is event {first} of the input, and events after it may have landed")
    if on_sent is not None and sent % 1000:
        on_sent(sent % 1000)
    return sent
