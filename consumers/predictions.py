"""One reader of the predictions topic for a whole process, handing records on as they come.

``stream-cd serve`` answers each HTTP request with the prediction a worker
served for it; :class:`PredictionFeed` is the one consumer of
``<prefix>.predictions`` that every request shares (not a consumer per
request). It reads every partition from the end as it was when the feed
started, outside any consumer group, in a thread of its own, and passes each
poll's decoded records to ``deliver`` (which, for an asyncio server, hands
them over to its event loop). Records that are not JSON objects are skipped.

Given a ``dead_letter_topic`` and ``refuse``, it reads that topic the same way
and passes on the requests a worker refused, as ``(id, reason)``: a message
there that is a prediction request with an id (features and no label, or a
ranking request), with the reason from its header. Dead feedback and invalid
messages are no request's answer and are skipped.

>>> from types import SimpleNamespace
>>> def dead(value, reason=b"feature 'a' changed its kind"):  # a record as the consumer gives it
...     return SimpleNamespace(value=value, headers=[(DEAD_LETTER_REASON, reason)])
>>> [refusal(dead(v)) for v in (b'{"id": "r1", "x": {"a": "red"}}', b'{"id": "r1", "y": true}', b'oops')]
[('r1', "feature 'a' changed its kind"), None, None]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream_cd.errors import InvalidEvent, TransportError
from stream_cd.events import Event, RankingRequest, decode_event
from stream_cd.transport import DEAD_LETTER_REASON

__all__ = ["PredictionFeed", "refusal"]

log = logging.getLogger(__name__)


def refusal(record) -> tuple[str, str] | None:
    """``(id, reason)`` of a dead-lettered prediction request, or None for anything else."""
    try:
        event = decode_event(record.value)
    except InvalidEvent:
        return None
    kind = type(event)
    if not ((kind is Event and event.x is not None and event.y is None) or kind is RankingRequest) or event.id is None:
        return None
    reasons = [value for name, value in record.headers or () if name == DEAD_LETTER_REASON]
    return event.id, reasons[0].decode("utf-8", "replace") if reasons else "refused (no reason given)"


class PredictionFeed:
    """Reads ``topic`` (and ``dead_letter_topic``) from its current end on; ``deliver(records)``
    gets each poll's predictions, ``refuse(refusals)`` its refused requests."""

    def __init__(self, bootstrap: str, topic: str, deliver: Callable[[list[dict]], None], *,
                 dead_letter_topic: str | None = None, refuse: Callable[[list[tuple[str, str]]], None] | None = None,
                 client_id: str = "stream-cd-serve-feed", poll_ms: int = 100, client_options: dict | None = None) -> None:
        if (dead_letter_topic is None) != (refuse is None):
            raise ValueError("a dead-letter topic needs refuse, and refuse a dead-letter topic")
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self._deliver, self._refuse = deliver, refuse
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what stopped the feed, if anything did
        try:
            self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None,
                                           enable_auto_commit=False, isolation_level="read_committed",
                                           fetch_max_wait_ms=poll_ms, **(client_options or {}))
            tps = []
            for name in (topic, *(() if dead_letter_topic is None else (dead_letter_topic,))):
                partitions = self._consumer.partitions_for_topic(name)
                if not partitions:
                    raise TransportError(f"topic {name!r} has no partitions (does it exist?)")
                tps += [TopicPartition(name, p) for p in sorted(partitions)]
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
                records, refusals = [], []
                for tp, batch in polled.items():
                    if tp.topic != self.topic:
                        refusals += filter(None, map(refusal, batch))
                        continue
                    for record in batch:
                        try:
                            value = orjson.loads(record.value)
                        except (orjson.JSONDecodeError, TypeError):
                            continue
                        if type(value) is dict:
                            records.append(value)
                if records:
                    deliver(records)
                if refusals:
                    self._refuse(refusals)  # type: ignore[misc]
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
