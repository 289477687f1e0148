"""The training worker on Kafka: a consumer-group member running the shared worker loop."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

from consumers.admin import TopicSpec, ensure_topics, partition_count, topic_config
from consumers.kafka_transport import COMMIT_TIMEOUT_S, KafkaTransport
from producers.predictions import PredictionPublisher
from stream_cd.errors import TransportError
from stream_cd.pipeline import Pipeline
from stream_cd.transport import Topics
from stream_cd.worker import DEFAULT_MAX_SNAPSHOT_BYTES, Worker, WorkerStats

__all__ = ["run_kafka_worker", "checkpoint_topic_spec", "dead_letter_topic_spec", "transactional_id",
           "DEAD_LETTER_MAX_BYTES"]

DEAD_LETTER_MAX_BYTES = 8 * 1024 * 1024
DEAD_LETTER_HEADROOM = 16 * 1024  # a dead letter's key, headers and batch framing, besides its value
SNAPSHOT_OVERHEAD_BYTES = 1024 * 1024  # room for the record's key, headers and batch framing

log = logging.getLogger(__name__)


def checkpoint_topic_spec(name: str, partitions: int = 1, max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES) -> TopicSpec:
    """The compacted state topic, with at least as many partitions as the events topic
    (the state of source partition p is stored in its partition p, so that a restore
    reads only the partitions it restores) and room for a snapshot of the largest size
    written. An existing one with another cleanup policy is an error.

    Its segments roll every hour, so that compaction, which never touches the segment
    being written, removes superseded snapshots within about an hour; a restore then
    reads little more than the newest versions.

    >>> spec = checkpoint_topic_spec("shop.checkpoints", partitions=8)
    >>> spec.partitions, spec.config["max.message.bytes"], spec.grow
    (8, '9437184', True)
    """
    return TopicSpec(
        name,
        partitions=partitions,
        config={"cleanup.policy": "compact", "max.message.bytes": str(max_snapshot_bytes + SNAPSHOT_OVERHEAD_BYTES),
                "segment.ms": str(3_600_000)},
        check=True,
        grow=True,
        at_least=("max.message.bytes",),
        unchecked=("segment.ms",),
    )


def dead_letter_topic_spec(name: str) -> TopicSpec:
    """The dead-letter topic: a dead letter carries its original bytes plus headers, so it
    has room for any message the events topic took.

    >>> int(dead_letter_topic_spec("shop.dead-letter").config["max.message.bytes"]) == DEAD_LETTER_MAX_BYTES
    True
    """
    return TopicSpec(name, config={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)})


def _dead_letter_room(bootstrap: str, topic: str, client_options: dict | None) -> int:
    """How much of a message a dead letter can hold: what the topic takes (which may be less
    than it is made with, when it was made elsewhere), less room for the headers."""
    try:
        limit = topic_config(bootstrap, topic, "max.message.bytes", client_options=client_options)
    except TransportError as err:  # say, no DescribeConfigs right on a secured cluster
        log.warning("cannot read the max.message.bytes of %s (%s); dead letters keep at most %s bytes of their "
                    "message", topic, err, f"{DEAD_LETTER_MAX_BYTES - DEAD_LETTER_HEADROOM:,}")
        limit = None
    return max(1024, int(limit or DEAD_LETTER_MAX_BYTES) - DEAD_LETTER_HEADROOM)


def transactional_id(group: str, worker_id: str) -> str:
    """The transactional id of an exactly-once worker: two live workers with the same one
    fence each other (see :mod:`consumers.transactional_lock`).

    >>> transactional_id("stream-cd.workers", "stream-cd-worker-0")
    'stream-cd.workers.stream-cd-worker-0'
    """
    return f"{group}.{worker_id}"


def run_kafka_worker(
    bootstrap: str,
    topics: Topics,
    group: str,
    pipeline: Pipeline,
    *,
    state_key: bytes | None,
    worker_id: str,
    max_events: int | None = None,
    idle_exit: float | None = None,
    stop: threading.Event | None = None,
    publish_predictions: bool = False,
    fetch_process: bool = True,
    client_options: dict | None = None,
    **options,
) -> WorkerStats:
    """Consume ``topics.events`` in ``group`` until a stop condition; return the loop's counts.

    With a ``state_key`` the worker is exactly-once: checkpoints in
    ``topics.checkpoints`` and offsets commit in one transaction whose id is
    ``<group>.<worker_id>`` (keep ``worker_id`` stable across restarts, so a
    restarted worker fences its crashed self at once). Without one it commits
    at least once and keeps no state.

    With ``publish_predictions`` every served prediction goes to ``topics.predictions``
    at once, outside the transaction (see :mod:`producers.predictions`); each commit
    first makes sure those of the requests it covers were delivered.

    ``client_options`` (kafka-python settings: security, SASL, TLS) go to every client it makes.
    """
    specs = [TopicSpec(topics.decisions), dead_letter_topic_spec(topics.dead_letter)]
    if publish_predictions:
        specs.append(TopicSpec(topics.predictions))
    if state_key is not None:
        events_partitions = partition_count(bootstrap, topics.events, client_options=client_options) or 1
        specs.append(checkpoint_topic_spec(topics.checkpoints, events_partitions,
                                           options.get("max_snapshot_bytes", DEFAULT_MAX_SNAPSHOT_BYTES)))
    ensure_topics(bootstrap, specs, client_options=client_options)
    if "dead_letter_max_bytes" not in options:
        options["dead_letter_max_bytes"] = _dead_letter_room(bootstrap, topics.dead_letter, client_options)
    publisher = None
    if publish_predictions:
        publisher = PredictionPublisher(bootstrap, topics.predictions, client_id=f"{group}.{worker_id}.predictions",
                                        client_options=client_options)
        options["on_prediction"] = _both(publisher.publish, options.pop("on_prediction", None))
    try:
        transport = KafkaTransport(
            bootstrap,
            topics.events,
            group,
            checkpoints_topic=topics.checkpoints if state_key is not None else None,
            transactional_id=transactional_id(group, worker_id) if state_key is not None else None,
            max_poll_records=options.get("batch_size", 2000),
            fetch_process=fetch_process,
            max_event_bytes=pipeline.config.max_event_bytes,
            before_commit=None if publisher is None else lambda: publisher.flush(COMMIT_TIMEOUT_S),
            client_options=client_options,
        )
        try:
            worker = Worker(transport, pipeline, topics, state_key=state_key, **options)
            _freeze_what_is_there()
            return worker.run(max_events=max_events, idle_exit=idle_exit, stop=stop, end_of_input_exits=False)
        finally:
            transport.close()
    finally:
        if publisher is not None:
            publisher.close()


YOUNG_OBJECTS = 10_000  # new objects before a young garbage collection (Python's default: 700)


def _freeze_what_is_there() -> None:
    """Keep what a worker has made by the time it starts (the modules of River, SciPy, NumPy
    and kafka-python: about 100,000 objects) out of every later garbage collection.

    A full collection walks every tracked object; with those in it, one took 60-330 ms on a
    busy machine, and every request fetched meanwhile waited for it. They live as long as
    the process, so nothing is lost by never collecting them. Model state made later
    (restored, learned, pending exposures) is collected as before, but a young collection
    waits for 10,000 new objects instead of 700: a new model key makes a few hundred
    (two River pipelines, metrics, stores), and with thousands of keys alive the collections
    they set off cost more than making them. In one process side by side, a logreg pair
    learned 10,000 keys' events about 30 % faster (1,000 keys about 10 %, one key the same).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def _both(first: Callable[[dict], None], then: Callable[[dict], None] | None) -> Callable[[dict], None]:
    """``first(record)``, then ``then(record)`` when there is one."""
    if then is None:
        return first

    def both(record: dict) -> None:
        first(record)
        then(record)

    return both
