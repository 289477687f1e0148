"""The fetch process on a real broker: positions after seeks, decoding, and its lifetime."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from consumers.fetcher import Fetcher
from stream_cd.errors import InvalidEvent
from stream_cd.events import Event
from tests.kafka.pipeline_helpers import produce, start_worker

pytestmark = pytest.mark.kafka

N = 5_000


def _events_topic(bootstrap: str, topic_prefix: str, partitions: int = 1) -> str:
    topic = f"{topic_prefix}events"
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=partitions)])
    return topic


def _fetcher(bootstrap: str, topic: str, max_records: int = 700) -> Fetcher:
    config = {"bootstrap_servers": bootstrap, "group_id": "ignored", "enable_auto_commit": False,
              "auto_offset_reset": "earliest", "isolation_level": "read_committed", "fetch_max_wait_ms": 100}
    return Fetcher(config, topic, max_records=max_records, max_event_bytes=1024)


def _take_until(fetcher: Fetcher, count: int, deadline_s: float = 60.0) -> list:
    batches: list = []
    deadline = time.monotonic() + deadline_s
    while sum(map(len, batches)) < count and time.monotonic() < deadline:
        batch = fetcher.take(10_000, 0.5)
        if batch is not None:
            batches.append(batch)
    return batches


def test_a_seek_is_obeyed_exactly_and_nothing_fetched_before_it_comes_after(kafka_bootstrap, topic_prefix):
    topic = _events_topic(kafka_bootstrap, topic_prefix)
    values = [orjson.dumps({"x": {"i": i}, "y": i % 2 == 0}) for i in range(N)]
    values[10] = b"not json"
    values[11] = orjson.dumps({"x": {"big": "z" * 2000}})  # over this fetcher's 1 kB limit
    produce(kafka_bootstrap, topic, ((b"k", v) for v in values))
    fetcher = _fetcher(kafka_bootstrap, topic)
    try:
        fetcher.seek(0, None)  # from the start
        first = _take_until(fetcher, 1)[0]
        assert first.offsets[0] == 0 and len(first) <= 700 and first.offsets == list(range(len(first)))
        assert type(first.events[0]) is Event and first.events[0].x == {"i": 0} and first.events[0].y is True
        assert isinstance(first.events[10], InvalidEvent) and "not valid JSON" in first.events[10].reason
        assert isinstance(first.events[11], InvalidEvent) and "over the limit of 1024 bytes" in first.events[11].reason
        assert first[10].value == b"not json" and first[10].key == b"k" and first[0].value == values[0]  # original bytes

        time.sleep(1.0)  # let the fetch process run ahead with batches from before the seek
        fetcher.seek(0, 4_000)
        after = _take_until(fetcher, N - 4_000)
        offsets = [o for batch in after for o in batch.offsets]
        assert offsets == list(range(4_000, N))  # in order, none missing, none from before the seek
        assert [e.x["i"] for batch in after for e in batch.events] == list(range(4_000, N))
    finally:
        fetcher.close()


def test_partitions_given_up_are_no_longer_fetched(kafka_bootstrap, topic_prefix):
    topic = _events_topic(kafka_bootstrap, topic_prefix, partitions=2)
    produce(kafka_bootstrap, topic, ((str(i % 2).encode(), orjson.dumps({"x": {"i": i}})) for i in range(2_000)))
    fetcher = _fetcher(kafka_bootstrap, topic)
    try:
        fetcher.seek(0, None)
        fetcher.seek(1, None)
        assert {b.partition for b in _take_until(fetcher, 2_000)} == {0, 1}
        fetcher.hold([1])
        fetcher.seek(1, 0)
        produce(kafka_bootstrap, topic, ((str(i % 2).encode(), orjson.dumps({"x": {"i": i}})) for i in range(200)))
        again = _take_until(fetcher, 1_100, deadline_s=15)
        assert {b.partition for b in again} == {1}
    finally:
        fetcher.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_the_fetch_process_exits_when_its_worker_is_killed(kafka_bootstrap, topic_prefix):
    prefix = topic_prefix.rstrip(".")
    _events_topic(kafka_bootstrap, f"{prefix}.")
    worker = start_worker(kafka_bootstrap, prefix, "--delivery", "at-least-once")
    deadline = time.monotonic() + 60
    children: list[int] = []
    while time.monotonic() < deadline and len(children) < 1:
        children = _children(worker.pid)
        time.sleep(0.2)
    assert children, "the worker started no fetch process"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def test_a_stuck_fetch_consumer_is_replaced_and_resumes_where_it_stopped(kafka_bootstrap, topic_prefix, monkeypatch):
    import consumers.fetch_process as fetcher

    topic = _events_topic(kafka_bootstrap, topic_prefix)
    produce(kafka_bootstrap, topic, ((b"k", orjson.dumps({"x": {"i": i}})) for i in range(3_000)))
    monkeypatch.setattr(fetcher, "STALL_S", 0.5)
    config = {"bootstrap_servers": kafka_bootstrap, "enable_auto_commit": False, "auto_offset_reset": "earliest",
              "isolation_level": "read_committed", "fetch_max_wait_ms": 100}
    reader = fetcher._Reader(config, topic)
    try:
        reader.seek(0, 1_000, epoch=1)
        first: list = []
        while not first:
            first = reader.poll(500).get(next(iter(reader.consumer.assignment())), [])
        assert first[0].offset == 1_000
        stuck = reader.consumer
        stuck.pause(*stuck.assignment())  # as a consumer that never comes back from a broker restart
        offsets = [r.offset for r in first]
        deadline = time.monotonic() + 30
        while offsets[-1] < 2_999 and time.monotonic() < deadline:
            for batch in reader.poll(500).values():
                offsets += [r.offset for r in batch]
            reader.heal_if_stalled()
        assert reader.consumer is not stuck
        assert offsets == list(range(1_000, 3_000))  # resumed exactly where the stuck one stopped
        replaced = reader.consumer
        for _ in range(3):  # at the end of the partition, nothing is stuck: no more replacements
            time.sleep(0.6)
            reader.poll(500)
            reader.heal_if_stalled()
        assert reader.consumer is replaced
    finally:
        reader.close()


def test_lag_counts_what_is_not_taken_and_a_transactional_partition_read_to_its_end_has_none(kafka_bootstrap, topic_prefix):
    from kafka import KafkaProducer

    topic = _events_topic(kafka_bootstrap, topic_prefix)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_prefix}lag")
    producer.init_transactions()
    for t in range(4):  # four transactions: a commit marker after each, the last one at the very end
        producer.begin_transaction()
        for i in range(250):
            producer.send(topic, key=b"k", value=orjson.dumps({"x": {"i": t * 250 + i}}))
        producer.commit_transaction()
    producer.close()
    fetcher = _fetcher(kafka_bootstrap, topic, max_records=100)
    try:
        fetcher.seek(0, 0)
        taken = _take_until(fetcher, 300)
        lag = fetcher.lag(timeout_s=10.0)
        assert lag is not None and 1_000 - sum(map(len, taken)) <= lag[0] <= 1_004 - sum(map(len, taken))
        taken += _take_until(fetcher, 1_000 - sum(map(len, taken)))
        assert [o for batch in taken for o in batch.offsets][-1] == 1_002  # the last message, before its marker
        deadline = time.monotonic() + 10  # the fetch after the last message passes its marker
        while (lag := fetcher.lag(timeout_s=10.0)) != {0: 0} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lag == {0: 0}  # past the markers too: read to the end
    finally:
        fetcher.close()


def test_closing_does_not_wait_for_a_fetch_process_blocked_on_a_full_pipe(kafka_bootstrap, topic_prefix):
    topic = _events_topic(kafka_bootstrap, topic_prefix)
    pad = "p" * 300
    produce(kafka_bootstrap, topic, ((b"k", orjson.dumps({"x": {"i": i, "pad": pad}})) for i in range(20_000)))
    fetcher = _fetcher(kafka_bootstrap, topic)
    assert fetcher.wait_ready(60)
    fetcher.seek(0, None)
    time.sleep(3.0)  # far more than the pipe holds is fetched by now: the process waits to send
    start = time.monotonic()
    fetcher.close(timeout_s=5.0)
    assert time.monotonic() - start < 2.0 and not fetcher._process.is_alive()
