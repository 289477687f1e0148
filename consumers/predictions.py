"""One reader of the predictions topic for a whole process, handing records on as they come.

``stream-cd serve`` answers each HTTP request with the prediction a worker
served for it; :class:`PredictionFeed` is the one consumer of
``<prefix>.predictions`` that every request shares (not a consumer per
request). It reads every partition from the end as it was when the feed
started, outside any consumer group, in a thread of its own, and passes each
poll's decoded records to ``deliver`` (which, for an asyncio server, hands
them over to its event loop). Records that are not JSON objects are skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream_cd.errors import TransportError

__all__ = ["PredictionFeed"]

log = logging.getLogger(__name__)


class PredictionFeed:
    """Reads ``topic`` from its current end on; ``deliver(records)`` gets each poll's records."""

    def __init__(self, bootstrap: str, topic: str, deliver: Callable[[list[dict]], None], *,
                 client_id: str = "stream-cd-serve-feed", poll_ms: int = 100, client_options: dict | None = None) -> None:
        self.topic = topic
        self._deliver = deliver
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what stopped the feed, if anything did
        try:
            self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None,
                                           enable_auto_commit=False, isolation_level="read_committed",
                                           fetch_max_wait_ms=poll_ms, **(client_options or {}))
            partitions = self._consumer.partitions_for_topic(topic)
            if not partitions:
                raise TransportError(f"topic {topic!r} has no partitions (does it exist?)")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            self._consumer.assign(tps)
            self._consumer.seek_to_end(*tps)
            for tp in tps:  # resolved now: a prediction published from here on is read
                self._consumer.position(tp)
        except KafkaError as err:
            raise TransportError(f"cannot read {topic!r} at {bootstrap}: {err}") from err
        self._thread = threading.Thread(target=self._run, name="stream-cd-prediction-feed", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        consumer, deliver = self._consumer, self._deliver
        try:
            while not self._stop.is_set():
                try:
                    polled = consumer.poll(timeout_ms=self._poll_ms, max_records=5000)
                except KafkaError as err:  # kafka-python retries the connection itself
                    log.warning("reading %s failed: %r; trying again", self.topic, err)
                    self._stop.wait(0.5)
                    continue
                records = []
                for batch in polled.values():
                    for record in batch:
                        try:
                            value = orjson.loads(record.value)
                        except (orjson.JSONDecodeError, TypeError):
                            continue
                        if type(value) is dict:
                            records.append(value)
                if records:
                    deliver(records)
        except BaseException as err:  # noqa: BLE001 - kept for the health check
            self.error = err
            log.error("the prediction feed stopped: %r", err)

    def close(self) -> None:
        """Stop reading and release the consumer; never raises."""
        self._stop.set()
        self._thread.join(5.0)
        try:
            self._consumer.close(autocommit=False)
        except Exception as err:  # noqa: BLE001
            log.debug("closing the prediction feed failed: %r", err)
