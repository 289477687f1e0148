"""Served predictions out at once, outside the worker's state transaction.

A worker publishes each served prediction to ``<prefix>.predictions`` the
moment it is served, with an idempotent producer of its own (not the
transactional one that carries the decisions, checkpoints and offsets), so
that a reader sees it within milliseconds in either delivery mode instead of
when the next transaction commits.

Why that is safe: exactly-once, a crash (or a rebalance, or a failed commit)
rolls the worker back to its last committed checkpoint and offsets, and it
serves the requests since then again from that same state, in the same order:
the same arm and version give the same output. A prediction published twice is
therefore the same record twice, and a reader keeps the first by request id.
Before a commit marks requests as done, :meth:`PredictionPublisher.flush` makes
sure their predictions were delivered, so a committed request always has its
prediction on the topic.

The producer is idempotent (``enable_idempotence``): its own retries never
duplicate or reorder a message. ``linger_ms`` is small, so a prediction waits at
most that long for company in a batch; batches are lz4-compressed
(:data:`COMPRESSION_TYPE`).
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream_cd.errors import TransportError

__all__ = ["PredictionPublisher", "LINGER_MS", "COMPRESSION_TYPE"]

# How long a prediction may wait for others to share its request to the broker. At
# 5,000 predictions/s one millisecond batches about five; at 50/s each goes alone.
LINGER_MS = 1
# lz4, the fastest codec both ways (bench/codec_choice.py): a batch of five predictions (650
# bytes) shrinks to 0.31 of its size in 2 µs on the producer's I/O thread and takes 1 µs to
# read; a lone prediction does not shrink, and kafka-python then sends it as it was. Against
# a request-to-prediction latency of milliseconds that adds nothing to measure; zstd and
# gzip would take 18-20 µs for 0.23-0.25.
COMPRESSION_TYPE = "lz4"


class PredictionPublisher:
    """Publishes served-prediction records to ``topic``, keyed by model key."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str = "stream-cd-predictions",
                 linger_ms: int = LINGER_MS, client_options: dict | None = None) -> None:
        self.topic = topic
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
                linger_ms=linger_ms, compression_type=COMPRESSION_TYPE, **(client_options or {}),
            )
        except KafkaError as err:
            raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err

    def publish(self, record: dict[str, Any]) -> None:
        """Send one served-prediction record now; a delivery that fails shows at :meth:`flush`."""
        try:
            future = self._producer.send(self.topic, key=record["model_key"].encode(), value=orjson.dumps(record))
        except KafkaError as err:
            raise TransportError(f"publishing a prediction to {self.topic!r} failed: {err}") from err
        future.add_errback(self._failed)

    def _failed(self, err: BaseException) -> None:  # on the producer's I/O thread
        with self._lock:
            self._failures.append(err)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything published so far is delivered; raise :class:`KafkaError`
        if some of it could not be (the caller's commit then fails, and the requests are
        served, and their predictions published, again)."""
        self._producer.flush(timeout=timeout_s)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise KafkaError(f"{len(failures)} predictions were not delivered to {self.topic!r}: {failures[0]!r}")

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``) and release the producer; never raises."""
        try:
            self._producer.close(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - what was not delivered is published again on replay
            pass
