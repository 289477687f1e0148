"""Read the compacted checkpoint topic: what a worker restores and ``stream-cd checkpoints`` lists."""

from __future__ import annotations

import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition

from stream_cd.errors import StateError

__all__ = ["PARTITIONS_HEADER", "MAX_CHECKPOINT_BYTES", "committed_records", "read_checkpoints"]

PARTITIONS_HEADER = "stream-cd.partitions"
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024


def committed_reader(bootstrap: str, client_id: str, **options) -> KafkaConsumer:
    """A consumer of committed data only that joins no group, so it moves no one's offsets."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=client_id,
        **options,
    )


def committed_records(bootstrap: str, topic: str, timeout_s: float = 60.0, client_options: dict | None = None) -> Iterator:
    """Every committed record of ``topic`` from its start to its end at the time of the call."""
    consumer = committed_reader(
        bootstrap, "stream-cd-restore", max_partition_fetch_bytes=MAX_CHECKPOINT_BYTES, fetch_max_bytes=MAX_CHECKPOINT_BYTES,
        **(client_options or {}),
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise StateError(f"reading checkpoints from {topic!r} took over {timeout_s:.0f} s")
            # short polls: the topic ends with a transaction marker, after which a poll finds nothing
            for records in consumer.poll(timeout_ms=50, max_records=1000).values():
                yield from records
    finally:
        consumer.close()


def covered_partitions(record) -> set[int]:
    """The source partitions a checkpoint record covers (from its header)."""
    header = dict(record.headers or ()).get(PARTITIONS_HEADER, b"")
    return {int(p) for p in header.decode().split(",") if p}


def read_checkpoints(bootstrap: str, topic: str, timeout_s: float = 60.0,
                     client_options: dict | None = None) -> dict[str, tuple[set[int], list[tuple[int, bytes]]]]:
    """Per key: the partitions any of its versions covers, and every stored version
    (offset, blob), oldest first. A tombstone (null value) deletes the versions before it.

    The partitions header is unsigned, so it only narrows what is read; a version
    without one still counts for the partitions its key's other versions cover.
    """
    found: dict[str, tuple[set[int], list[tuple[int, bytes]]]] = {}
    for record in committed_records(bootstrap, topic, timeout_s, client_options):
        key = record.key.decode() if record.key else ""
        if record.value is None:
            found.pop(key, None)
            continue
        covered, versions = found.get(key, (set(), []))
        versions.append((record.offset, record.value))
        found[key] = (covered | covered_partitions(record), versions)
    return found
