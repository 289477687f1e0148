"""How far behind a worker is: each partition's end offset and committed offset, for its metrics.

A client of its own, outside the consumer group (it never subscribes, so it
never joins), asked only when ``/metrics`` is scraped. Its answers are kept for
``min_interval_s`` so that scrapes from several Prometheus servers cost one
round trip, and an unreachable broker costs a scrape at most ``timeout_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

__all__ = ["EndOffsets"]

log = logging.getLogger(__name__)


class EndOffsets:
    """``partitions -> {partition: (end offset, committed offset or None)}`` of ``topic`` in ``group``."""

    def __init__(self, bootstrap: str, topic: str, group: str, *, timeout_s: float = 5.0, min_interval_s: float = 1.0,
                 client_options: dict | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_options = dict(client_options or {})
        self.topic = topic
        self.group = group
        self.timeout_s = timeout_s
        self.min_interval_s = min_interval_s
        self._consumer: KafkaConsumer | None = None  # made on the first scrape: no network in the constructor
        self._cached: tuple[float, tuple[int, ...], dict[int, tuple[int, int | None]]] | None = None

    def __call__(self, partitions: Sequence[int]) -> dict[int, tuple[int, int | None]] | None:
        wanted = tuple(partitions)
        now = time.monotonic()
        if self._cached is not None and self._cached[1] == wanted and now - self._cached[0] < self.min_interval_s:
            return self._cached[2]
        try:
            consumer = self._client()
            tps = [TopicPartition(self.topic, p) for p in wanted]
            ms = int(self.timeout_s * 1000)
            ends = consumer.end_offsets(tps, timeout_ms=ms)
            answer = {tp.partition: (ends[tp], consumer.committed(tp, timeout_ms=ms)) for tp in tps if tp in ends}
        except KafkaError as err:
            log.debug("no end offsets for the lag metric: %r", err)
            self.close()
            return None
        self._cached = (now, wanted, answer)
        return answer

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group, client_id="stream-cd-lag",
                enable_auto_commit=False, isolation_level="read_committed", **self.client_options,
            )
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 - being thrown away
                pass
            self._consumer = None
