"""Kafka as the worker's transport: a consumer-group member that polls in batches.

No network calls happen in the constructor's callers' hot path beyond what
kafka-python itself does; :meth:`KafkaTransport.commit` flushes the producer
(outputs durable) before it commits the consumer's offsets, which is the
documented order: flush outputs, then commit offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from stream_cd.errors import TransportError
from stream_cd.transport import Message

__all__ = ["KafkaTransport"]

log = logging.getLogger(__name__)


class KafkaTransport:
    """Consume one topic as a member of ``group``; produce outputs to any topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        client_id: str = "stream-cd-worker",
        max_poll_records: int = 2000,
    ) -> None:
        self.topic = topic
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_poll_records=max_poll_records,
                fetch_max_wait_ms=100,
            )
            self.consumer.subscribe([topic])
            self.producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                linger_ms=5,
            )
        except KafkaError as err:
            raise TransportError(f"cannot connect to Kafka at {bootstrap}: {err}") from err

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Message]:
        records = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        if not records:
            return ()
        if len(records) == 1:
            return next(iter(records.values()))
        batch: list = []
        for partition_records in records.values():
            batch.extend(partition_records)
        return batch

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.producer.send(topic, key=key, value=value, headers=headers)

    def commit(self) -> None:
        try:
            self.producer.flush()
            self.consumer.commit()
        except KafkaError as err:
            raise TransportError(f"commit failed: {err}") from err

    def close(self) -> None:
        try:
            self.producer.close(timeout=10)
        finally:
            self.consumer.close()
