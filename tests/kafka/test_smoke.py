"""Smoke tests on a real Apache Kafka broker: admin, round trip, consumer group, transactions."""

from __future__ import annotations

import re
import time
from collections import defaultdict

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumers.admin import TopicSpec, broker_cluster_id, ensure_topics
from stream_cd.errors import ConfigError

pytestmark = pytest.mark.kafka

POLL_DEADLINE_S = 60.0


def _producer(bootstrap: str, **extra) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        **extra,
    )


def _read_all(bootstrap: str, topic: str, expected: int, **extra) -> list:
    """Read ``topic`` from the start with an assigned (group-less) consumer until ``expected`` records."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, **extra)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        records = []
        deadline = time.monotonic() + POLL_DEADLINE_S
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=2000).values():
                records.extend(batch)
        # One more short poll: anything beyond `expected` would be a duplicate or a leak.
        for batch in consumer.poll(timeout_ms=300, max_records=2000).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def test_probe_returns_the_cluster_id(kafka_bootstrap):
    cluster_id = broker_cluster_id(kafka_bootstrap, timeout_s=10)
    assert cluster_id and len(cluster_id) == 22


def test_admin_creates_and_lists_topics(kafka_bootstrap, topic_prefix):
    names = [f"{topic_prefix}events", f"{topic_prefix}decisions"]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics({names[0]: {"num_partitions": 3, "replication_factor": 1},
                             names[1]: {"num_partitions": 1, "replication_factor": 1}},
                            wait_for_metadata=True)
        assert set(names) <= set(admin.list_topics())
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        assert described == {names[0]: 3, names[1]: 1}
    finally:
        admin.close()


def test_ensure_topics_is_idempotent_and_checks_when_asked(kafka_bootstrap, topic_prefix):
    compacted = TopicSpec(f"{topic_prefix}checkpoints", partitions=2, config={"cleanup.policy": "compact"})
    plain = TopicSpec(f"{topic_prefix}events", partitions=4)
    assert sorted(ensure_topics(kafka_bootstrap, [compacted, plain])) == sorted([compacted.name, plain.name])
    assert ensure_topics(kafka_bootstrap, [compacted, plain]) == []
    checked = TopicSpec(compacted.name, partitions=2, config={"cleanup.policy": "compact"}, check=True)
    assert ensure_topics(kafka_bootstrap, [checked]) == []
    with pytest.raises(ConfigError, match="partitions"):
        ensure_topics(kafka_bootstrap, [TopicSpec(plain.name, partitions=2, check=True)])
    with pytest.raises(ConfigError, match="cleanup.policy"):
        ensure_topics(kafka_bootstrap, [TopicSpec(plain.name, partitions=4, config={"cleanup.policy": "compact"},
                                                  check=True)])


def test_round_trip_of_10000_json_events_in_order_per_partition(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}events"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=4)])
    n, keys = 10_000, [f"model-{i}" for i in range(16)]
    producer = _producer(kafka_bootstrap)
    seq: dict[str, int] = defaultdict(int)
    try:
        for i in range(n):
            key = keys[i % len(keys)]
            event = {"key": key, "id": f"e{i}", "ts": 1732600000000 + i,
                     "x": {"f": i * 0.5, "colour": "red"}, "y": i % 3 == 0, "seq": seq[key]}
            seq[key] += 1
            producer.send(topic, key=key.encode(), value=orjson.dumps(event))
        producer.flush(timeout=60)
    finally:
        producer.close()

    records = _read_all(kafka_bootstrap, topic, n)
    events = [orjson.loads(r.value) for r in records]
    assert len(events) == n
    assert {e["id"] for e in events} == {f"e{i}" for i in range(n)}  # none lost, none doubled

    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    seen: dict[str, list[int]] = defaultdict(list)
    offsets: dict[int, list[int]] = defaultdict(list)
    for record, event in zip(records, events):
        assert record.key.decode() == event["key"]
        partitions_of_key[event["key"]].add(record.partition)
        seen[event["key"]].append(event["seq"])
        offsets[record.partition].append(record.offset)
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a model key spread over partitions"
    assert len(offsets) > 1, "all keys landed in one partition"
    for partition, offs in offsets.items():
        assert offs == sorted(offs), f"partition {partition} out of order"
    for key, numbers in seen.items():
        assert numbers == list(range(seq[key])), f"events of {key} out of order or missing"


def test_two_consumers_in_a_group_split_four_partitions(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}events"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=4)])
    group = f"{topic_prefix}group"
    consumers = [KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                               auto_offset_reset="earliest", session_timeout_ms=10_000,
                               heartbeat_interval_ms=500)
                 for _ in range(2)]
    try:
        deadline = time.monotonic() + POLL_DEADLINE_S
        while time.monotonic() < deadline:
            for consumer in consumers:
                consumer.poll(timeout_ms=200, max_records=100)
            first, second = (c.assignment() for c in consumers)
            if first and second and not first & second and len(first | second) == 4:
                break
        first, second = (c.assignment() for c in consumers)
        assert first and second, f"a consumer got no partitions: {first} / {second}"
        assert not first & second
        assert {tp.partition for tp in first | second} == {0, 1, 2, 3}
    finally:
        for consumer in consumers:
            consumer.close()


def test_transactions_commit_and_abort(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}tx"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)])
    producer = _producer(kafka_bootstrap, transactional_id=f"{topic_prefix}producer")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, key=f"k{i}".encode(), value=orjson.dumps({"n": i, "tx": "committed"}))
        producer.commit_transaction()
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, key=f"k{i}".encode(), value=orjson.dumps({"n": i, "tx": "aborted"}))
        producer.flush()
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(topic, key=b"k0", value=orjson.dumps({"n": 5, "tx": "committed"}))
        producer.commit_transaction()
    finally:
        producer.close()

    committed = [orjson.loads(r.value) for r in _read_all(kafka_bootstrap, topic, 6, isolation_level="read_committed")]
    assert sorted(e["n"] for e in committed) == [0, 1, 2, 3, 4, 5]
    assert all(e["tx"] == "committed" for e in committed)
    # The aborted records are in the log: a read_uncommitted reader sees them.
    everything = [orjson.loads(r.value) for r in _read_all(kafka_bootstrap, topic, 11,
                                                           isolation_level="read_uncommitted")]
    assert sum(e["tx"] == "aborted" for e in everything) == 5


def test_a_replay_whose_events_the_broker_refuses_fails_saying_which(kafka_bootstrap, topic_prefix):
    """kafka-python reports a refused batch only to the send's future: a replay must not call
    such events sent."""
    from producers.replay import replay_to_kafka
    from stream_cd.errors import TransportError

    topic = f"{topic_prefix}small"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, config={"max.message.bytes": "2000"})])
    small = [orjson.dumps({"x": {"f": float(i)}, "y": True}) for i in range(5)]
    big = orjson.dumps({"x": {"f": 1.0}, "y": True, "id": "z" * 5000})  # over the topic's limit
    assert replay_to_kafka(small, kafka_bootstrap, topic) == 5
    with pytest.raises(TransportError) as refused:
        replay_to_kafka([*small[:2], big], kafka_bootstrap, topic)
    # the big event's batch is refused (with the small ones in it, if they shared it)
    lost, sent, first = re.search(r"(\d) of the (\d) events sent to .* were not delivered \(.*"
                                  r"the first of them is event (\d) of the input", str(refused.value)).groups()
    assert sent == "3" and 1 <= int(lost) <= 3 and int(first) == 4 - int(lost)
