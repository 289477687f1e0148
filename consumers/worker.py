"""The training worker on Kafka: a consumer-group member running the shared worker loop."""

from __future__ import annotations

import threading
from collections.abc import Callable

from consumers.admin import TopicSpec, ensure_topics
from consumers.kafka_transport import KafkaTransport
from stream_cd.decisions import Decision
from stream_cd.pipeline import Pipeline
from stream_cd.transport import Topics
from stream_cd.worker import WorkerStats, run_worker

__all__ = ["run_kafka_worker"]


def run_kafka_worker(
    bootstrap: str,
    topics: Topics,
    group: str,
    pipeline: Pipeline,
    *,
    max_events: int | None = None,
    idle_exit: float | None = None,
    stop: threading.Event | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    batch_size: int = 2000,
) -> WorkerStats:
    """Consume ``topics.events`` in ``group`` until a stop condition; return the loop's counts."""
    ensure_topics(bootstrap, [TopicSpec(topics.decisions), TopicSpec(topics.dead_letter)])
    transport = KafkaTransport(bootstrap, topics.events, group, max_poll_records=batch_size)
    try:
        return run_worker(
            transport,
            pipeline,
            topics,
            max_events=max_events,
            idle_exit=idle_exit,
            stop=stop,
            on_decision=on_decision,
            batch_size=batch_size,
            end_of_input_exits=False,
        )
    finally:
        transport.close()
