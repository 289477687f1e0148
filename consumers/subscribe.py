"""Read decisions from the control topic, as an iterator for programs and for ``stream-cd decisions``.

Reads with ``isolation_level=read_committed`` and without a consumer group: it
assigns every partition itself, so a subscriber never moves anyone's offsets.
A record that is not a decision (not a JSON object: a tombstone, or another
application's message) is skipped with a warning naming where it is.

>>> from types import SimpleNamespace
>>> _decision(SimpleNamespace(value=b'{"action": "promote"}', partition=0, offset=4))
{'action': 'promote'}
>>> _decision(SimpleNamespace(value=None, partition=0, offset=5)) is None
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from consumers.checkpoints import committed_reader

from stream_cd.errors import TransportError

__all__ = ["subscribe_decisions"]

log = logging.getLogger(__name__)


def _decision(record: Any) -> dict[str, Any] | None:
    """The decision a record holds, or None (with a warning) when it holds none."""
    try:
        value = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if type(value) is not dict:
        log.warning("skipping the record at partition %s offset %s of the decisions topic: it is not a decision "
                    "(a JSON object)", record.partition, record.offset)
        return None
    return value


def _partitions(consumer: KafkaConsumer, topic: str, wait_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + wait_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.2)


def subscribe_decisions(
    bootstrap: str,
    topic: str = "stream-cd.decisions",
    *,
    from_beginning: bool = False,
    follow: bool = False,
    max_decisions: int | None = None,
    key: str | None = None,
    poll_timeout_s: float = 0.5,
    stop: threading.Event | None = None,
    client_options: dict | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield decisions (dicts) from the control topic.

    ``from_beginning`` starts at the oldest stored decision, else at the end.
    Without ``follow`` it stops once it has read up to where the topic ended
    when it started; with ``follow`` it waits for new decisions until closed.
    ``key`` keeps only one model key's decisions; ``max_decisions`` stops after that many;
    ``stop`` (an event) ends it between polls. ``client_options`` are kafka-python settings
    for a secured cluster (:func:`consumers.client_config.load_client_config` reads them from a file).
    """
    if max_decisions is not None and max_decisions <= 0:
        return
    consumer = committed_reader(bootstrap, "stream-cd-decisions", **(client_options or {}))
    try:
        parts = _partitions(consumer, topic, wait_s=10.0 if follow else 3.0)
        if not parts:
            if follow:
                raise TransportError(f"topic {topic!r} does not exist at {bootstrap}; start a worker first or check --topic-prefix")
            return
        consumer.assign(parts)
        if from_beginning:
            consumer.seek_to_beginning(*parts)
        else:
            consumer.seek_to_end(*parts)
        end = consumer.end_offsets(parts)
        yielded = 0
        wanted = key.encode() if key is not None else None
        while stop is None or not stop.is_set():
            batch = consumer.poll(timeout_ms=int(poll_timeout_s * 1000), max_records=1000)
            for records in batch.values():
                for record in records:
                    if wanted is not None and record.key != wanted:
                        continue
                    decision = _decision(record)
                    if decision is None:
                        continue
                    yield decision
                    yielded += 1
                    if max_decisions is not None and yielded >= max_decisions:
                        return
            if not follow and all(consumer.position(tp) >= end[tp] for tp in parts):
                return
    finally:
        consumer.close()
