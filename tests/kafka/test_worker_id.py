"""The default worker id is the host name: a restarted worker takes over its id (and fences
its crashed self), and a second live worker with the same id on the host is refused."""

from __future__ import annotations

import signal
import socket
import time

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from stream_cd.simulate.datasets import generate
from tests.kafka.pipeline_helpers import finish_with_counts, produce, start_worker, wait_committed

pytestmark = pytest.mark.kafka

FLAGS = ("--model", "logreg", "--shadow", "none", "--commit-every-seconds", "1", "--fetch-inline")


def test_a_second_worker_with_the_default_id_is_refused_and_a_restarted_one_takes_over(kafka_bootstrap, topic_prefix):
    prefix = topic_prefix.rstrip(".")
    events = [orjson.dumps(e) for e in generate("agrawal", 2000, seed=7)]
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events", partitions=1)])
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", raw) for raw in events[:1000]))
    first = start_worker(kafka_bootstrap, prefix, *FLAGS)
    wait_committed(kafka_bootstrap, f"{prefix}.workers", 1000, first)

    started = time.monotonic()
    second = start_worker(kafka_bootstrap, prefix, *FLAGS)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2 and time.monotonic() - started < 30
    expected = f"another worker on this host is running with transactional id '{prefix}.workers.{socket.gethostname()}'"
    assert expected in err.decode() and f"(pid {first.pid})" in err.decode()
    assert "--worker-id" in err.decode()

    first.send_signal(signal.SIGKILL)  # the lock goes with the process
    first.wait(timeout=10)
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", raw) for raw in events[1000:]))
    summary, counts = finish_with_counts(start_worker(kafka_bootstrap, prefix, *FLAGS, "--idle-exit", "3"), timeout=120)
    assert summary["models"]["default"]["learned"] == 2000 and counts["restored"] >= 1
