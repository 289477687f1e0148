"""Delayed feedback on a real broker: labels joined to their requests, late and unknown
ids dead-lettered with reasons, bounded memory, and kill -9 on a stream of requests
and feedback."""

from __future__ import annotations

import orjson
import pytest

from stream_cd.simulate.datasets import generate
from stream_cd.simulate.feedback import delayed_feedback
from stream_cd.transport import DEAD_LETTER_REASON
from tests.kafka.pipeline_helpers import finish, produce, read_topic, start_worker
from tests.kafka.test_exactly_once import _assert_same, _fill, _killed_three_times, _reference

pytestmark = pytest.mark.kafka

N = 20_000


def _feedback_stream(n: int, seed: int, drift_at: int | None = None) -> list[bytes]:
    events = generate("agrawal", n, seed=seed, drift_at=drift_at)
    return [orjson.dumps(e) for e in delayed_feedback(events, 0, 5_000, seed=seed)]


def test_feedback_0_to_5000_events_late_is_joined_and_unknown_ids_are_dead_lettered(kafka_bootstrap, topic_prefix):
    stream = _feedback_stream(N, seed=3)
    unknown = [orjson.dumps({"id": f"nobody-{i}", "y": True}) for i in range(25)]
    produce(kafka_bootstrap, f"{topic_prefix}events", ((b"default", raw) for raw in stream + unknown))
    worker = start_worker(kafka_bootstrap, topic_prefix.rstrip("."), "--model", "logreg", "--shadow", "hoeffding-tree",
                          "--delivery", "at-least-once", "--idle-exit", "4", "--publish-predictions")
    summary, _, _ = finish(worker, timeout=180)
    model = summary["models"]["default"]
    assert summary["events"] == 2 * N + 25 and summary["invalid"] == 25
    assert model["learned"] == N == model["feedback"]["joined"]  # every label joined and learned
    assert model["feedback"] == {"pending": 0, "joined": N, "expired": 0, "rejected": 25}
    assert model["metric"]["value"] > 0.85
    letters = read_topic(kafka_bootstrap, f"{topic_prefix}dead-letter", expected=25, deadline_s=60)
    assert sorted(r.value for r in letters) == sorted(unknown)
    reasons = {dict(r.headers)[DEAD_LETTER_REASON].decode() for r in letters}
    assert all("no such request is waiting for feedback" in reason for reason in reasons), reasons
    served = read_topic(kafka_bootstrap, f"{topic_prefix}predictions", expected=N, deadline_s=60)
    records = [orjson.loads(r.value) for r in served]
    assert len({r["id"] for r in records}) == N
    assert {(r["arm"], r["experiment"]) for r in records} == {("champion", None)}


def test_requests_that_never_get_feedback_are_bounded_by_max_pending(kafka_bootstrap, topic_prefix):
    requests = ({"key": "default", "id": f"q{i}", "ts": e["ts"], "x": e["x"]} for i, e in enumerate(generate("agrawal", 30_000, seed=8)))
    produce(kafka_bootstrap, f"{topic_prefix}events", ((b"default", orjson.dumps(r)) for r in requests))
    worker = start_worker(kafka_bootstrap, topic_prefix.rstrip("."), "--model", "logreg", "--max-pending", "1000",
                          "--idle-exit", "4")
    summary, _, _ = finish(worker, timeout=180)
    feedback = summary["models"]["default"]["feedback"]
    assert feedback == {"pending": 1000, "joined": 0, "expired": 29_000, "rejected": 0}


def test_kill_minus_nine_on_a_stream_of_requests_and_delayed_feedback_equals_an_uninterrupted_run(
        kafka_bootstrap, topic_prefix):
    stream = _feedback_stream(N, seed=5, drift_at=12_000)
    probe = [e["x"] for e in generate("agrawal", 500, seed=99)]
    reference = _reference(kafka_bootstrap, topic_prefix + "ref", stream, probe)
    assert reference[0]["models"]["default"]["learned"] == N

    prefix = topic_prefix + "killed"
    _fill(kafka_bootstrap, prefix, stream)
    summary = _killed_three_times(kafka_bootstrap, prefix, (6_000, 18_000, 30_000), seed=6)
    _assert_same(kafka_bootstrap, prefix, summary, reference, probe)
    assert summary["models"]["default"]["feedback"]["joined"] == N
