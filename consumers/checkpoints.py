"""Read the compacted checkpoint topic: what a worker restores and ``stream-cd checkpoints`` lists."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from kafka import KafkaConsumer, TopicPartition

from stream_cd.errors import StateError
from stream_cd.state.records import parse_store_key

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


def committed_records(bootstrap: str, topic: str, timeout_s: float = 60.0,
                      partitions: Iterable[int] | None = None, client_options: dict | None = None) -> Iterator:
    """Every committed record of ``topic`` (of its ``partitions`` only, when given) from its
    start to its end at the time of the call; each partition's in the order written."""
    consumer = committed_reader(
        bootstrap, "stream-cd-restore", max_partition_fetch_bytes=MAX_CHECKPOINT_BYTES, fetch_max_bytes=MAX_CHECKPOINT_BYTES,
        **(client_options or {}),
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return
        if partitions is not None:
            parts = set(parts) & set(partitions)
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
                     partitions: Iterable[int] | None = None,
                     client_options: dict | None = None) -> dict[str, list[tuple[int, int, bytes]]]:
    """Per state record, every stored version still there as (offset, ring slot, blob),
    oldest first: what ``stream-cd checkpoints`` lists and tests inspect (a worker's
    restore keeps only the newest good one, :func:`stream_cd.state.newest.newest_versions`).
    A tombstone deletes the versions of its slot before it; keys of another layout
    are left out.
    """
    found: dict[str, list[tuple[int, int, bytes]]] = {}
    for record in committed_records(bootstrap, topic, timeout_s, partitions, client_options):
        parsed = parse_store_key(record.key.decode() if record.key else "")
        if parsed is None:
            continue
        name, slot = parsed
        versions = found.setdefault(name, [])
        if record.value is None:
            versions[:] = [v for v in versions if v[1] != slot]
        else:
            versions.append((record.offset, slot, record.value))
    return {name: versions for name, versions in found.items() if versions}
