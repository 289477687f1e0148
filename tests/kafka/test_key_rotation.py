"""Rotating STREAM_CD_STATE_KEY on a real broker: checkpoints signed with the old key restore
under "new,old", and are refused (the worker says so and starts afresh) under "new" alone."""

from __future__ import annotations

import subprocess

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from stream_cd.simulate.datasets import generate
from tests.kafka.pipeline_helpers import REPO, WorkerProcess, STARTED, cli, finish_with_counts, produce

pytestmark = pytest.mark.kafka

OLD = "old-state-key-0123456789abcdef"
NEW = "new-state-key-0123456789abcdef"
FLAGS = ("--model", "logreg", "--shadow", "none", "--commit-every-events", "500", "--commit-every-seconds", "1",
         "--batch-size", "500", "--fetch-inline")


def _worker(bootstrap: str, prefix: str, keys: str, *flags: str) -> subprocess.Popen:
    import os

    worker = WorkerProcess(
        cli("worker", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--json", "--worker-id", "w1", *FLAGS, *flags),
        cwd=REPO, env={**os.environ, "STREAM_CD_STATE_KEY": keys, "PYTHONUNBUFFERED": "1"},
    )
    STARTED.append(worker)
    return worker


def _learned_under_old_then(bootstrap: str, prefix: str, events: list[bytes], keys: str) -> tuple[dict, dict, str]:
    """2,000 events learned under the old key; 1,000 more arrive, and a worker with ``keys``
    takes over: its summary, its own counts and its stderr."""
    ensure_topics(bootstrap, [TopicSpec(f"{prefix}.events", partitions=1)])
    produce(bootstrap, f"{prefix}.events", ((b"default", raw) for raw in events[:2000]))
    first, counts = finish_with_counts(_worker(bootstrap, prefix, OLD, "--idle-exit", "3"), timeout=120)
    assert first["models"]["default"]["learned"] == 2000 and counts["checkpoints_written"] > 0
    produce(bootstrap, f"{prefix}.events", ((b"default", raw) for raw in events[2000:]))
    worker = _worker(bootstrap, prefix, keys, "--idle-exit", "3")
    summary, counts = finish_with_counts(worker, timeout=180)
    return summary, counts, worker.stderr.read().decode()


@pytest.fixture(scope="module")
def events() -> list[bytes]:
    return [orjson.dumps(e) for e in generate("agrawal", 3000, seed=14)]


def test_old_key_checkpoints_restore_under_new_and_old(kafka_bootstrap, topic_prefix, events):
    summary, counts, stderr = _learned_under_old_then(kafka_bootstrap, topic_prefix + "both", events, f"{NEW},{OLD}")
    assert counts["restored"] >= 2 and counts["refused_checkpoints"] == 0, stderr[-2000:]
    model = summary["models"]["default"]
    assert model["learned"] == model["events_seen"] == 3000  # the learned count goes on from 2,000
    assert counts["consumed"] == 1000  # only the new events were read

    listed = subprocess.run(  # everything it checkpointed is now signed with the new key
        cli("checkpoints", "--bootstrap", kafka_bootstrap, "--topic-prefix", topic_prefix + "both", "--json"),
        capture_output=True, timeout=60, cwd=REPO, env={"PATH": "", "STREAM_CD_STATE_KEY": f"{NEW},{OLD}"},
    )
    assert listed.returncode == 0, listed.stderr.decode()
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert {row["key"] for row in rows} == {"default", "partition:0"}
    assert all(row["signed_by"] == 1 for row in rows)


def test_old_key_checkpoints_are_refused_under_the_new_key_alone(kafka_bootstrap, topic_prefix, events):
    summary, counts, stderr = _learned_under_old_then(kafka_bootstrap, topic_prefix + "new", events, NEW)
    assert counts["restored"] == 0 and counts["refused_checkpoints"] >= 2
    assert "refused checkpoint of model key 'default'" in stderr and "its signature does not match" in stderr
    assert "cannot restore model key 'default': no valid checkpoint is left; it starts afresh" in stderr
    # afresh from the group's committed offset: the old key's 2,000 are not in the model, and
    # nothing already committed (its decisions, its outputs) is processed again
    assert counts["consumed"] == 1000
    assert summary["models"]["default"]["learned"] == summary["models"]["default"]["events_seen"] == 1000
