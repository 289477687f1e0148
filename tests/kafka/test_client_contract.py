"""The public kafka-python behaviour the worker relies on, checked on a real broker.

``consumers.kafka_transport`` and ``consumers.group_watch`` use only these calls;
a kafka-python release that changes one of them fails here, not in production.
(Commit and abort with ``read_committed`` readers: ``test_smoke``.)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.base import MemberState
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.admin import TopicSpec, ensure_topics

pytestmark = pytest.mark.kafka

DEADLINE_S = 30.0


class _Noted(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    def on_partitions_revoked(self, revoked) -> None:
        self.events.append(("revoked", {tp.partition for tp in revoked}))

    def on_partitions_assigned(self, assigned) -> None:
        self.events.append(("assigned", {tp.partition for tp in assigned}))


def _member(bootstrap: str, group: str, topic: str, listener: ConsumerRebalanceListener | None = None) -> KafkaConsumer:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed",
                             session_timeout_ms=10_000, heartbeat_interval_ms=500)
    consumer.subscribe([topic], listener=listener)
    return consumer


def _poll_until(consumers: list[KafkaConsumer], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, "the group did not settle"
        for consumer in consumers:
            consumer.poll(timeout_ms=200)


def _topic(bootstrap: str, prefix: str, partitions: int = 2) -> str:
    topic = f"{prefix}contract"
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=partitions)])
    return topic


def test_offsets_sent_to_a_committed_transaction_are_the_groups_and_an_aborted_ones_are_not(kafka_bootstrap, topic_prefix):
    topic, group = _topic(kafka_bootstrap, topic_prefix), f"{topic_prefix}group"
    consumer = _member(kafka_bootstrap, group, topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx")
    try:
        _poll_until([consumer], lambda: bool(consumer.assignment()))
        metadata = consumer.group_metadata()
        assert metadata.member_id and metadata.generation_id > 0 and metadata.state == MemberState.STABLE
        producer.init_transactions()
        tp = TopicPartition(topic, 0)
        for offset, end in ((7, producer.commit_transaction), (9, producer.abort_transaction)):
            producer.begin_transaction()
            producer.send(f"{topic_prefix}outputs", value=b"out")
            producer.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "", -1)}, consumer.group_metadata())
            end()
        assert consumer.committed(tp) == 7
    finally:
        producer.close()
        consumer.close()


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(kafka_bootstrap, topic_prefix):
    topic = _topic(kafka_bootstrap, topic_prefix)
    first = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx")
    second = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}tx")
    try:
        first.init_transactions()
        first.begin_transaction()
        first.send(topic, value=b"zombie")
        second.init_transactions()  # fences the first and aborts its open transaction
        with pytest.raises(KafkaError):
            first.commit_transaction()
    finally:
        first.close(timeout=1)
        second.close()


def test_a_second_member_joining_revokes_and_reassigns_and_the_coordinator_shows_both(kafka_bootstrap, topic_prefix):
    topic, group = _topic(kafka_bootstrap, topic_prefix, partitions=4), f"{topic_prefix}group"
    noted = _Noted()
    first = _member(kafka_bootstrap, group, topic, noted)
    second = None
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        _poll_until([first], lambda: len(first.assignment()) == 4)
        assert noted.events[-1] == ("assigned", {0, 1, 2, 3})
        first.pause(*first.assignment())
        assert first.paused() == first.assignment()
        second = _member(kafka_bootstrap, group, topic)
        _poll_until([first, second], lambda: len(first.assignment()) == 2 and len(second.assignment()) == 2)
        kinds = [kind for kind, _ in noted.events]
        assert kinds[-2:] == ["revoked", "assigned"] and noted.events[-2][1] == {0, 1, 2, 3}
        description = admin.describe_groups([group])[group]
        assert description["group_state"] == "Stable"
        members = {m["member_id"] for m in description["members"]}
        assert members == {first.group_metadata().member_id, second.group_metadata().member_id}
    finally:
        admin.close()
        for consumer in (first, second):
            if consumer is not None:
                consumer.close()
