"""A message the worker cannot read at all: which one, and what to do about it.

A record batch compressed with a codec whose library is missing, or a record
that fails its CRC check, cannot be turned into messages: kafka-python raises
:class:`~kafka.errors.UnsupportedCodecError` or
:class:`~kafka.errors.CorruptRecordError` from ``poll`` and says neither the
partition nor the offset. Reading it again gives the same error, so retrying
is pointless, and skipping it would lose every valid event in the batch. The
worker therefore stops with :class:`~stream_cd.errors.UnreadableMessage`,
naming the topic, partition and offset (found by :func:`locate`) and what to
do; it resumes from its last commit once started again. (Kafka Streams' default
for a record it cannot deserialize, "log and fail", is the same choice.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError

from stream_cd.errors import UnreadableMessage

__all__ = ["READ_ERRORS", "locate", "unreadable_message"]

log = logging.getLogger(__name__)

# What kafka-python raises from poll for data that no retry can read.
READ_ERRORS = (UnsupportedCodecError, CorruptRecordError)

_GROUP_SETTINGS = {"group_id", "session_timeout_ms", "heartbeat_interval_ms", "enable_auto_commit"}
PROBE_S = 5.0  # at most this long to read one partition alone


def locate(config: Mapping[str, Any], topic: str, positions: Mapping[int, int]) -> tuple[int, int] | None:
    """The partition of ``topic`` that cannot be read from its position in ``positions``
    (partition -> next offset to read), and that offset; None if none fails when read alone.

    Each partition is read alone from its position by a consumer of its own (``config``
    without group settings), until it gives records (readable), raises one of
    :data:`READ_ERRORS` (the one), or :data:`PROBE_S` pass.
    """
    settings = {k: v for k, v in config.items() if k not in _GROUP_SETTINGS}
    settings["client_id"] = f"{config.get('client_id', 'stream-cd')}-locate"
    probe = KafkaConsumer(**settings)
    try:
        for partition, offset in sorted(positions.items()):
            tp = TopicPartition(topic, partition)
            probe.assign([tp])
            probe.seek(tp, offset)
            if _fails(probe):
                return partition, offset
        return None
    finally:
        probe.close(autocommit=False, timeout_ms=1_000)


def _fails(probe: KafkaConsumer) -> bool:
    """Whether the probe's one partition raises a read error before it gives a record."""
    deadline = time.monotonic() + PROBE_S
    while time.monotonic() < deadline:
        try:
            if any(probe.poll(timeout_ms=500, max_records=1).values()):
                return False
        except READ_ERRORS:
            return True
    return False


def unreadable_message(topic: str, partition: int | None, offset: int | None, error: str) -> UnreadableMessage:
    """The error to stop with, saying what could not be read and what to do.

    >>> err = unreadable_message("shop.events", 3, 1200, "UnsupportedCodecError: Libraries for snappy compression codec not found")
    >>> (err.topic, err.partition, err.offset)
    ('shop.events', 3, 1200)
    >>> print(err)  # doctest: +ELLIPSIS
    cannot read topic 'shop.events' partition 3 at offset 1200 (UnsupportedCodecError: ...): install ...
    >>> damaged = str(unreadable_message("shop.events", 0, 7, "CorruptRecordError: Record is corrupt"))
    >>> "--reset-offsets" in damaged, "Exactly-once workers resume from their checkpoints" in damaged
    (True, True)
    """
    where = f"topic {topic!r}" if partition is None else f"topic {topic!r} partition {partition} at offset {offset}"
    if "codec" in error.lower():
        todo = ("install kafka-python's codec libraries (pip install 'kafka-python[lz4,snappy,zstd]'; "
                "stream-cd's own install includes them) and start the worker again: it resumes from its last commit")
    else:
        todo = ("the data in the broker's log is damaged. Workers delivering at least once can go on without it: "
                "stop them, move the group's committed offset of that partition past it (kafka-consumer-groups.sh "
                "--reset-offsets --to-offset ... --execute) and start them again. Exactly-once workers resume from "
                "their checkpoints, not from those offsets, so for them the partition must be repaired in the "
                "broker (elect a leader whose replica is intact, or restore the topic from a backup)")
    return UnreadableMessage(f"cannot read {where} ({error}): {todo}", topic, partition, offset)
