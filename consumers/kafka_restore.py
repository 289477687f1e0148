"""The restore reads of :class:`consumers.kafka_transport.KafkaTransport`: the checkpoints
partitions of the partitions being restored, and nothing else, keeping one verified
version of each record (:func:`stream_cd.state.newest.newest_versions`). The
:class:`KafkaRestore` mixin is this part of the transport.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError

from consumers.admin import TopicSpec, ensure_topics
from consumers.checkpoints import committed_records
from stream_cd.errors import StateError, TransportError
from stream_cd.state.newest import Opener, Version, newest_versions

__all__ = ["KafkaRestore"]


class KafkaRestore:
    """Restore reads of a Kafka transport (a mixin of :class:`consumers.kafka_transport.KafkaTransport`)."""

    bootstrap: str
    producer: Any
    checkpoints_topic: str | None
    client_options: dict
    restore_bytes_read: int

    def load_checkpoints(self, partitions: Sequence[int], opener: Opener,
                         older: Mapping[str, int] | None = None) -> dict[str, Version]:
        """Read the checkpoints partitions of ``partitions`` (the state of a source partition
        is stored in the checkpoints partition of the same number), and nothing else."""
        self._land()
        self._make_room(partitions)
        try:
            records = committed_records(self.bootstrap, self.checkpoints_topic, partitions=partitions,
                                        client_options=self.client_options)
            stream = ((r.key.decode() if r.key else "", r.offset, r.value) for r in self._counted(records))
            return newest_versions(stream, opener, older)
        except (KafkaError, StateError) as err:
            raise TransportError(f"reading checkpoints from {self.checkpoints_topic!r} failed: {err}") from err

    def _make_room(self, partitions: Sequence[int]) -> None:
        """The events topic has grown past the checkpoints topic: add partitions to it, and
        start over with new clients (this producer knows only the partitions it had)."""
        try:
            have = len(self.producer.partitions_for(self.checkpoints_topic) or ())
        except KafkaError as err:
            raise TransportError(f"no metadata for {self.checkpoints_topic!r}: {err}") from err
        need = max(partitions, default=-1) + 1
        if need <= have:
            return
        ensure_topics(self.bootstrap, [TopicSpec(self.checkpoints_topic, partitions=need, check=True, grow=True)],
                      client_options=self.client_options)
        raise TransportError(f"the checkpoints topic {self.checkpoints_topic!r} had {have} partitions, fewer than the "
                             f"events topic's {need}; it now has {need}, and the worker starts over with new clients")

    def _counted(self, records):
        for record in records:
            self.restore_bytes_read += len(record.value or b"") + len(record.key or b"")
            yield record
