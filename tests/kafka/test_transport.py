"""The Kafka transport's commits on a real broker: a commit the worker does not wait for
lands while it goes on, and one that fails shows at the next call, with nothing of its
transaction visible."""

from __future__ import annotations

import time

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from consumers.checkpoints import MAX_CHECKPOINT_BYTES, read_checkpoints
from consumers.kafka_transport import KafkaTransport
from stream_cd.errors import TransportError
from stream_cd.transport import Checkpoint
from tests.kafka.pipeline_helpers import produce, read_topic

pytestmark = pytest.mark.kafka

N = 10


def _polled(bootstrap: str, prefix: str, exactly_once: bool = True, **options) -> tuple[KafkaTransport, str]:
    """A transport holding a one-partition topic of ``N`` events, all of them polled."""
    topic, outputs = f"{prefix}events", f"{prefix}outputs"
    ensure_topics(bootstrap, [TopicSpec(topic), TopicSpec(outputs), TopicSpec(f"{prefix}checkpoints")])
    produce(bootstrap, topic, ((b"k", orjson.dumps({"x": {"a": i}, "y": i % 2 == 0})) for i in range(N)))
    modes = {"checkpoints_topic": f"{prefix}checkpoints", "transactional_id": f"{prefix}worker"} if exactly_once else {}
    transport = KafkaTransport(bootstrap, topic, f"{prefix}group", **modes, **options)
    polled = 0
    deadline = time.monotonic() + 60
    while polled < N:
        assert time.monotonic() < deadline, f"polled {polled} of {N} events in 60 s"
        batch = transport.poll(N, 0.5)
        for kind, partitions in transport.rebalance_events():
            if kind == "assigned":
                for partition in partitions:
                    transport.seek_committed(partition)
        polled += len(batch)
    return transport, outputs


def _blobs(bootstrap: str, prefix: str) -> list[bytes]:
    return [blob for _, _, blob in read_checkpoints(bootstrap, f"{prefix}checkpoints").get("k", [])]


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
def test_outputs_sent_while_a_commit_lands_go_out_after_it(kafka_bootstrap, topic_prefix, exactly_once):
    transport, outputs = _polled(kafka_bootstrap, topic_prefix, exactly_once)
    checkpoints = [Checkpoint("s0/k", b"state", (0,))] if exactly_once else []
    try:
        transport.send(outputs, b"k", b"before")
        transport.commit(checkpoints, wait=False)
        transport.send(outputs, b"k", b"while")  # the commit takes round trips to the broker: still in flight
        if exactly_once:  # it lands without "while", which belongs to the events after it
            time.sleep(1.0)
            assert [r.value for r in read_topic(kafka_bootstrap, outputs, 2, deadline_s=3)] == [b"before"]
        transport.commit(wait=True)
        assert [r.value for r in read_topic(kafka_bootstrap, outputs, 2)] == [b"before", b"while"]
        assert transport.committed_offset(0) == N
        if exactly_once:
            assert _blobs(kafka_bootstrap, topic_prefix) == [b"state"]
    finally:
        transport.close()


def test_a_commit_that_fails_in_flight_raises_from_the_next_poll_and_none_of_it_shows(kafka_bootstrap, topic_prefix):
    transport, outputs = _polled(kafka_bootstrap, topic_prefix)
    try:
        transport.send(outputs, b"k", b"lost")
        too_large = Checkpoint("s0/k", b"s" * (MAX_CHECKPOINT_BYTES + 1), (0,))
        transport.commit([too_large], wait=False)  # its send fails in the commit's own thread
        time.sleep(1.1)  # time for the commit's thread to fail: the next poll lands it
        with pytest.raises(TransportError, match="commit failed"):
            transport.poll(N, 0.5)
        transport.abort()
        transport.send(outputs, b"k", b"kept")
        transport.commit([Checkpoint("s0/k", b"state", (0,))])
        assert [r.value for r in read_topic(kafka_bootstrap, outputs, 2, deadline_s=5)] == [b"kept"]
        assert _blobs(kafka_bootstrap, topic_prefix) == [b"state"]
        assert transport.committed_offset(0) == N
    finally:
        transport.close()


@pytest.mark.parametrize("exactly_once", [True, False], ids=["exactly-once", "at-least-once"])
def test_a_side_output_not_delivered_fails_the_commit_and_its_offsets_stay_uncommitted(
        kafka_bootstrap, topic_prefix, exactly_once):
    from kafka.errors import KafkaError

    failing = [True]

    def before_commit() -> None:  # the predictions' flush, say, finding one undelivered
        if failing[0]:
            raise KafkaError("1 of 3 predictions were not delivered")

    transport, outputs = _polled(kafka_bootstrap, topic_prefix, exactly_once, before_commit=before_commit)
    try:
        transport.send(outputs, b"k", b"decision")
        with pytest.raises(TransportError, match="predictions were not delivered"):
            transport.commit(wait=True)
        assert transport.committed_offset(0) is None
        transport.abort()
        failing[0] = False
        transport.commit(wait=True)
        assert transport.committed_offset(0) == N
    finally:
        transport.close()
