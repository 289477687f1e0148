"""Exactly-once state at scale on a real broker (issue 14's acceptance): a thousand model keys
on eight partitions through kills, a late joiner and rebalances; a tampered newest snapshot
after compaction; a key whose state outgrows the snapshot limit."""

from __future__ import annotations

import random
import signal
import threading
import time

import orjson
import pytest
from kafka import KafkaProducer

from consumers.admin import TopicSpec, ensure_topics
from consumers.checkpoints import read_checkpoints
from consumers.kafka_worker import checkpoint_topic_spec
from stream_cd import subscribe_decisions
from stream_cd.simulate.datasets import generate
from stream_cd.state.records import model_key_of_record
from stream_cd.state.signing import load_state
from tests.kafka.pipeline_helpers import finish, produce, produce_paced, start_worker, wait_committed, worker_story

pytestmark = pytest.mark.kafka

STATE_KEY = "test-state-key-0123456789abcdef"
KEYS, PER_KEY, PARTITIONS = 1_000, 40, 8
# Snapshots every 2 s and commits every second: restores load snapshots older than the
# commit and replay the partitions from their replay points.
FLAGS = ("--model", "logreg", "--shadow", "logreg", "--commit-every-seconds", "1", "--snapshot-every-seconds", "2",
         "--version-every", "10")


@pytest.fixture(autouse=True)
def state_key(monkeypatch):
    monkeypatch.setenv("STREAM_CD_STATE_KEY", STATE_KEY)


@pytest.fixture(scope="module")
def keyed_stream() -> list[tuple[bytes, bytes]]:
    events = generate("agrawal", KEYS * PER_KEY, seed=14)
    return [(f"k{i % KEYS}".encode(), orjson.dumps({**e, "key": f"k{i % KEYS}"})) for i, e in enumerate(events)]


@pytest.fixture(scope="module")
def probe() -> list[dict]:
    return [e["x"] for e in generate("agrawal", 20, seed=99)]


def _final(bootstrap: str, prefix: str, probe: list[dict]) -> dict[str, list]:
    """Each model key's champion predictions on the probe set, from its newest snapshot."""
    out = {}
    for record, versions in read_checkpoints(bootstrap, f"{prefix}.checkpoints").items():
        model_key = model_key_of_record(record)
        if model_key is not None:
            state = load_state(versions[-1][2], STATE_KEY.encode(), record, record)
            out[model_key] = [state.champion.model.predict_one(x) for x in probe]
    return out


def _decisions(bootstrap: str, prefix: str) -> list[dict]:
    found = list(subscribe_decisions(bootstrap, f"{prefix}.decisions", from_beginning=True))
    return sorted(found, key=lambda d: d["decision_id"])


def _merged(summaries: list[dict]) -> dict:
    """The summaries of workers that ended holding disjoint keys, as one."""
    models: dict = {}
    for summary in summaries:
        for key, model in summary["models"].items():
            assert models.setdefault(key, model) == model, f"two workers end with different states of {key}"
    return {"models": dict(sorted(models.items()))}


def _differences(got: dict, want: dict) -> str:
    """Which model keys' states differ, and how the first of them does."""
    keys = sorted(k for k in want.keys() | got.keys() if got.get(k) != want.get(k))
    if not keys:
        return "no model key differs"
    first, mine = want.get(keys[0], {}), got.get(keys[0], {})
    fields = {f: (mine.get(f), first.get(f)) for f in first.keys() | mine.keys() if mine.get(f) != first.get(f)}
    return f"{len(keys)} model keys differ ({', '.join(keys[:10])}...); {keys[0]} (got, wanted): {fields}"


def test_a_thousand_keys_through_two_kills_and_a_late_joiner_equal_an_uninterrupted_run(
        kafka_bootstrap, topic_prefix, keyed_stream, probe):
    reference_prefix = topic_prefix + "ref"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{reference_prefix}.events", partitions=PARTITIONS)])
    produce(kafka_bootstrap, f"{reference_prefix}.events", keyed_stream)
    reference, _, _ = finish(start_worker(kafka_bootstrap, reference_prefix, *FLAGS, "--worker-id", "ref",
                                          "--idle-exit", "5"), timeout=600)
    assert len(reference["models"]) == KEYS
    reference_decisions = _decisions(kafka_bootstrap, reference_prefix)
    assert len(reference_decisions) >= KEYS * 3  # checkpoint decisions of every key

    prefix = topic_prefix + "scaled"
    group = f"{prefix}.workers"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events", partitions=PARTITIONS)])
    half = len(keyed_stream) // 2
    produce(kafka_bootstrap, f"{prefix}.events", keyed_stream[:half])
    rest = threading.Thread(target=produce_paced, args=(kafka_bootstrap, f"{prefix}.events", keyed_stream[half:], 2_500))
    delays = random.Random(7)
    first = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1")
    workers = [first]
    wait_committed(kafka_bootstrap, group, 6_000, first)
    time.sleep(delays.uniform(0.0, 1.0))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    rest.start()  # the second half arrives while the workers come and go
    first = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1")
    workers.append(first)
    wait_committed(kafka_bootstrap, group, half + 2_000, first)
    late = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w2", "--idle-exit", "8")
    workers.append(late)
    wait_committed(kafka_bootstrap, group, half + 8_000, first)
    time.sleep(delays.uniform(0.0, 1.0))
    first.send_signal(signal.SIGKILL)  # its partitions move to the late joiner, then back
    first.wait(timeout=10)
    first = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1", "--idle-exit", "8")
    workers.append(first)
    rest.join()
    summaries = [finish(worker, timeout=600)[0] for worker in (first, late)]

    merged, wanted = _merged(summaries)["models"], _merged([reference])["models"]
    assert merged == wanted, f"{_differences(merged, wanted)}\n{worker_story(*workers)}"
    decisions = _decisions(kafka_bootstrap, prefix)
    assert decisions == reference_decisions, worker_story(*workers)  # none lost, none repeated, the same content
    assert _final(kafka_bootstrap, prefix, probe) == _final(kafka_bootstrap, reference_prefix, probe), worker_story(*workers)


def test_a_tampered_newest_snapshot_restores_from_the_one_before_after_compaction(kafka_bootstrap, topic_prefix):
    events = [(b"default", orjson.dumps(e)) for e in generate("agrawal", 4_000, seed=3)]
    flags = ("--model", "logreg", "--snapshot-every-events", "300", "--commit-every-events", "300")
    reference_prefix = topic_prefix + "ref"
    produce(kafka_bootstrap, f"{reference_prefix}.events", events)
    reference, _, _ = finish(start_worker(kafka_bootstrap, reference_prefix, *flags, "--idle-exit", "4"), timeout=300)

    prefix = topic_prefix + "compacted"
    spec = checkpoint_topic_spec(f"{prefix}.checkpoints")
    eager = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100",
             "max.compaction.lag.ms": "100"}
    ensure_topics(kafka_bootstrap, [TopicSpec(spec.name, spec.partitions, {**spec.config, **eager})])
    produce(kafka_bootstrap, f"{prefix}.events", events[:3_000])
    finish(start_worker(kafka_bootstrap, prefix, *flags, "--idle-exit", "4"), timeout=300)
    deadline = time.monotonic() + 120
    # Of the ten snapshots written (one every 300 events), the cleaner keeps the newest of each ring
    # slot. It never cleans the segment being written: a record of a key no reader takes for a
    # snapshot rolls it (segment.ms is 100 ms), so that the last snapshots become cleanable too.
    while True:
        produce(kafka_bootstrap, f"{prefix}.checkpoints", [(b"roll", b"-")])
        versions = read_checkpoints(kafka_bootstrap, f"{prefix}.checkpoints")["model:default"]
        if len(versions) == 3:
            break
        assert time.monotonic() < deadline, f"not compacted: {len(versions)} versions of model:default"
        time.sleep(2)
    _, slot, blob = versions[-1]
    tampered = bytearray(blob)
    tampered[len(tampered) // 2] ^= 0x01
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(f"{prefix}.checkpoints", key=f"s{slot}/model:default".encode(), value=bytes(tampered), partition=0)
    producer.flush()
    producer.close()

    produce(kafka_bootstrap, f"{prefix}.events", events[3_000:])
    summary, _, stderr = finish(start_worker(kafka_bootstrap, prefix, *flags, "--idle-exit", "4"), timeout=300)
    assert "its signature does not match" in stderr
    assert "restored model key 'default' from an older snapshot" in stderr
    assert summary == reference


def test_a_key_past_the_snapshot_limit_goes_on_unsaved_and_every_other_key_is_kept(kafka_bootstrap, topic_prefix):
    def events():
        for i in range(6_000):
            if i % 2:  # a key whose every event brings new features: its weights grow without bound
                yield b"big", orjson.dumps({"key": "big", "x": {f"f{i}": 1.0, f"g{i}": 0.5}, "y": i % 4 == 1})
            else:
                yield b"small", orjson.dumps({"key": "small", "x": {"a": i % 7, "b": 1.0}, "y": i % 3 == 0})

    prefix = topic_prefix + "big"
    produce(kafka_bootstrap, f"{prefix}.events", events())
    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--snapshot-every-events", "500",
                          "--commit-every-events", "500", "--max-snapshot-bytes", "200000", "--idle-exit", "4")
    summary, printed, stderr = finish(worker, timeout=300)
    assert summary["models"]["small"]["learned"] == summary["models"]["big"]["learned"] == 3_000
    assert "model key 'big': its snapshot is" in stderr and "over the limit of 200,000" in stderr
    assert "giving up" not in stderr and "rolling back" not in stderr
    unsaved = [d for d in _decisions(kafka_bootstrap, prefix) if d["action"] == "unsaved"]
    assert len(unsaved) >= 2 and {d["model_key"] for d in unsaved} == {"big"}
    assert all(d["evidence"]["bytes"] > d["evidence"]["limit"] == 200_000 for d in unsaved)
    stored = read_checkpoints(kafka_bootstrap, f"{prefix}.checkpoints")
    assert "model:small" in stored and "model:big" not in stored  # its early snapshots were deleted
