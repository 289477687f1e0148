"""Compressed input on a real broker: every codec a producer may use is read, and a batch
that cannot be read stops the worker with the partition and offset (issue 14, point 9)."""

from __future__ import annotations

import os
import time

import orjson
import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from consumers.admin import TopicSpec, ensure_topics
from stream_cd.simulate.datasets import generate
from tests.kafka.pipeline_helpers import REPO, finish, start_worker

pytestmark = pytest.mark.kafka

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 2_000


@pytest.fixture
def prefix(topic_prefix: str) -> str:
    return topic_prefix.rstrip(".")


def _produce_with_librdkafka(bootstrap: str, topic: str, codec: str, events) -> int:
    """Produce ``events`` with confluent-kafka (librdkafka), batches compressed with ``codec``."""
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20, "acks": "all"})
    failures: list = []
    n = 0
    for event in events:
        producer.produce(topic, key=event["key"].encode(), value=orjson.dumps(event),
                         on_delivery=lambda err, _msg: failures.append(err) if err else None)
        producer.poll(0)
        n += 1
    assert producer.flush(30) == 0 and not failures, failures[:3]
    return n


def test_events_produced_by_librdkafka_with_every_codec_are_all_learned(kafka_bootstrap, prefix):
    topic = f"{prefix}.events"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)])
    for seed, codec in enumerate(CODECS):  # one model key per codec
        _produce_with_librdkafka(kafka_bootstrap, topic, codec, generate("agrawal", PER_CODEC, seed=seed, key=codec))
    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--idle-exit", "3")
    summary, _, err = finish(worker, timeout=180)
    assert summary["invalid"] == 0
    assert {codec: summary["models"][codec]["learned"] for codec in CODECS} == dict.fromkeys(CODECS, PER_CODEC), err[-2000:]


@pytest.mark.parametrize("inline", [False, True], ids=["fetch-process", "fetch-inline"])
def test_a_batch_whose_codec_is_missing_stops_the_worker_naming_partition_and_offset(
    kafka_bootstrap, prefix, tmp_path, monkeypatch, inline
):
    """The worker runs where zstandard cannot be imported (a package of that name that raises
    ImportError comes first on its path): a zstd batch in partition 1 after 300 plain events."""
    topic = f"{prefix}.events"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)])
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    events = list(generate("agrawal", 300, seed=1))
    for i, event in enumerate(events):
        plain.send(topic, value=orjson.dumps(event), partition=i % 2)
    plain.flush()
    plain.close()
    zstd = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", compression_type="zstd", linger_ms=50)
    for event in events[:50]:
        zstd.send(topic, value=orjson.dumps(event), partition=1)
    zstd.flush()
    zstd.close()

    missing = tmp_path / "without-zstd" / "zstandard"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text('raise ImportError("zstandard is not installed here")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(missing.parent), str(REPO), os.environ.get("PYTHONPATH", "")]))
    started = time.monotonic()
    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--idle-exit", "30",
                          *(["--fetch-inline"] if inline else []))
    _, err = worker.communicate(timeout=120)
    err = err.decode()
    assert worker.returncode == 2, err[-2000:]
    assert time.monotonic() - started < 60  # stopped at once, not after an idle exit or retries
    assert f"cannot read topic '{topic}' partition 1 at offset 150" in err, err[-2000:]
    assert "zstd" in err and "kafka-python[lz4,snappy,zstd]" in err
    assert "rolling back" not in err  # no retry
