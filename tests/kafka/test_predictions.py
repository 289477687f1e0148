"""Served predictions on a real broker (issue 13): published at once, outside the state
transaction, and still exactly one distinct prediction per request, after kill -9 too."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from consumers.admin import TopicSpec, ensure_topics
from stream_cd.simulate.datasets import generate
from tests.kafka import pipeline_helpers as helpers
from tests.kafka.pipeline_helpers import (committed, finish, predictions_by_id, produce, start_worker,
                                          wait_committed)

pytestmark = pytest.mark.kafka

MODEL = ("--model", "logreg", "--shadow", "hoeffding-tree", "--version-every", "2000", "--publish-predictions")


def requests_among_labeled(n: int, seed: int, every: int) -> list[bytes]:
    """Agrawal events where every ``every``-th is a prediction request with the id ``r<position>``;
    the labeled events have no id (their prediction records have none either)."""
    out = []
    for i, event in enumerate(generate("agrawal", n, seed=seed)):
        event.pop("id", None)
        if i % every == every - 1:
            event = {"key": "default", "id": f"r{i}", "x": event["x"]}
        out.append(orjson.dumps(event))
    return out


def request_ids(stream: list[bytes]) -> set[str]:
    return {e["id"] for e in map(orjson.loads, stream) if "id" in e}


def one_distinct_each(found: dict[str, list[tuple]], ids: set[str]) -> dict[str, tuple]:
    """The one distinct prediction of every request in ``ids``; fails if one has none or two."""
    assert set(found) == ids, f"{len(ids - set(found))} requests have no prediction, {len(set(found) - ids)} unknown ids"
    several = {i: sorted(set(p)) for i, p in found.items() if len(set(p)) != 1}
    assert not several, f"{len(several)} requests have more than one distinct prediction, e.g. {next(iter(several.items()))}"
    return {i: p[0] for i, p in found.items()}


def produce_paced(bootstrap: str, topic: str, stream: list[bytes], rate: float) -> None:
    """Produce ``stream`` at a steady ``rate`` messages per second (the load of the test)."""
    helpers.produce_paced(bootstrap, topic, [(b"default", raw) for raw in stream], rate)


def test_requests_at_a_steady_rate_get_one_distinct_prediction_each_in_both_delivery_modes(kafka_bootstrap, topic_prefix):
    stream = requests_among_labeled(3_000, seed=13, every=3)
    ids = request_ids(stream)
    served = {}
    for mode in ("exactly-once", "at-least-once"):
        prefix = topic_prefix + mode
        ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events")])
        worker = start_worker(kafka_bootstrap, prefix, *MODEL, "--delivery", mode, "--worker-id", "w1", "--idle-exit", "4")
        produce_paced(kafka_bootstrap, f"{prefix}.events", stream, rate=600)
        summary, _, _ = finish(worker)
        assert summary["models"]["default"]["feedback"]["pending"] == len(ids)
        found = predictions_by_id(kafka_bootstrap, prefix)
        served[mode] = one_distinct_each(found, ids)
        assert len({p[2] for p in served[mode].values()}) > 1  # the versions moved on while it served
    assert served["exactly-once"] == served["at-least-once"]  # the same stream is served the same either way


def _tail_until_beyond(bootstrap: str, prefix: str, position: int, worker, deadline_s: float = 120) -> None:
    """Wait until the prediction of a request past ``position`` in the events topic is readable."""
    topic = f"{prefix}.predictions"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    deadline = time.monotonic() + deadline_s
    try:
        while not consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.2)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        while True:
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"no prediction past {position} in {deadline_s} s"
            for batch in consumer.poll(timeout_ms=200, max_records=10_000).values():
                ids = [orjson.loads(r.value)["id"] for r in batch]
                if any(i is not None and int(i[1:]) > position for i in ids):
                    return
    finally:
        consumer.close()


def test_after_kill_minus_nine_every_request_still_has_one_distinct_prediction_the_uninterrupted_ones(
        kafka_bootstrap, topic_prefix):
    stream = requests_among_labeled(60_000, seed=7, every=5)
    ids = request_ids(stream)
    flags = (*MODEL, "--commit-every-events", "20000", "--commit-every-seconds", "30", "--worker-id", "w1")

    reference_prefix = topic_prefix + "ref"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{reference_prefix}.events")])
    produce(kafka_bootstrap, f"{reference_prefix}.events", ((b"default", raw) for raw in stream))
    finish(start_worker(kafka_bootstrap, reference_prefix, *flags, "--idle-exit", "4"), timeout=300)
    reference = one_distinct_each(predictions_by_id(kafka_bootstrap, reference_prefix), ids)

    prefix = topic_prefix + "killed"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events")])
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", raw) for raw in stream))
    worker = start_worker(kafka_bootstrap, prefix, *flags)
    wait_committed(kafka_bootstrap, f"{prefix}.workers", 20_000, worker)
    at = committed(kafka_bootstrap, f"{prefix}.workers")
    # predictions of requests past the commit are out (they do not wait for it): kill -9 now
    _tail_until_beyond(kafka_bootstrap, prefix, at + 2_000, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    finish(start_worker(kafka_bootstrap, prefix, *flags, "--idle-exit", "4"), timeout=300)

    found = predictions_by_id(kafka_bootstrap, prefix)
    assert sum(map(len, found.values())) > len(ids)  # served again after the restart: copies of some
    assert one_distinct_each(found, ids) == reference


def test_predictions_file_lines_after_kill_minus_nine_are_never_repeated(kafka_bootstrap, topic_prefix, tmp_path):
    """``--predictions`` lines are written when their commit lands: the killed run's file is
    the start of the uninterrupted run's, the restarted run's file its end, and no line is in
    both (a commit that landed in the moment before the kill may leave its lines in neither)."""
    stream = requests_among_labeled(20_000, seed=3, every=4)
    flags = ("--model", "logreg", "--shadow", "none", "--commit-every-events", "2000", "--commit-every-seconds", "1",
             "--batch-size", "500", "--worker-id", "w1")  # a commit covers fewer than 2,000 + 500 events

    def lines(path) -> list[tuple]:  # a request's ts is when it was served: not compared
        return [tuple((k, v) for k, v in orjson.loads(line).items() if k != "ts") for line in path.read_bytes().splitlines()]

    reference_prefix = topic_prefix + "ref"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{reference_prefix}.events")])
    produce(kafka_bootstrap, f"{reference_prefix}.events", ((b"default", raw) for raw in stream))
    finish(start_worker(kafka_bootstrap, reference_prefix, *flags, "--idle-exit", "4",
                        "--predictions", str(tmp_path / "ref.jsonl")), timeout=300)
    reference = lines(tmp_path / "ref.jsonl")
    assert len(reference) == len(stream)

    prefix = topic_prefix + "killed"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events")])
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", raw) for raw in stream))
    worker = start_worker(kafka_bootstrap, prefix, *flags, "--predictions", str(tmp_path / "killed.jsonl"))
    wait_committed(kafka_bootstrap, f"{prefix}.workers", 8_000, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    finish(start_worker(kafka_bootstrap, prefix, *flags, "--idle-exit", "4",
                        "--predictions", str(tmp_path / "restarted.jsonl")), timeout=300)

    killed, restarted = lines(tmp_path / "killed.jsonl"), lines(tmp_path / "restarted.jsonl")
    assert len(killed) >= 6_000 and killed == reference[: len(killed)]
    assert restarted == reference[len(reference) - len(restarted):]
    assert len(killed) + len(restarted) <= len(reference)  # nothing repeated
    assert len(killed) + len(restarted) >= len(reference) - 2_500  # at most the one commit that landed as it died
