"""KafkaTransport's clients come in pairs: a start (or a reset's retry) that fails halfway
leaves no client behind. kafka-python's classes are replaced here by stand-ins that record
their lives: what is tested is the transport's own bookkeeping, not Kafka."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

import consumers.kafka_transport as kt
from stream_cd.errors import TransportError


class Client:
    made: list["Client"] = []
    fail_producer = True

    def __init__(self, **config) -> None:
        self.closed = False
        Client.made.append(self)

    def close(self, **_) -> None:
        self.closed = True


class Consumer(Client):
    pass


class Producer(Client):
    def init_transactions(self) -> None:
        if Client.fail_producer:
            raise KafkaTimeoutError("Timeout waiting for transaction coordinator")


def test_a_producer_that_cannot_start_closes_the_consumer_made_for_it(monkeypatch) -> None:
    monkeypatch.setattr(kt, "KafkaConsumer", Consumer)
    monkeypatch.setattr(kt, "KafkaProducer", Producer)
    monkeypatch.setattr(Client, "made", [])
    with pytest.raises(TransportError, match="cannot connect to Kafka at b:9092: .*transaction coordinator"):
        kt.KafkaTransport("b:9092", "t.events", "g", checkpoints_topic="t.cp", transactional_id="g.w1",
                          fetch_process=False)
    assert [type(c).__name__ for c in Client.made] == ["Consumer", "Producer"]
    assert all(c.closed for c in Client.made)
