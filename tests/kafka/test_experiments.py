"""Experiments end to end on a real broker: two workers in one group, four model keys each
with an A/B test started by `stream-cd experiment start`, requests and delayed feedback;
every decision exactly once, each unit served by one arm, the same outcome as in-process."""

from __future__ import annotations

import random
import subprocess
import time

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from stream_cd import subscribe_decisions
from stream_cd.simulate.datasets import generate
from stream_cd.simulate.feedback import delayed_feedback
from tests.kafka.pipeline_helpers import REPO, cli, finish, produce, read_topic, start_worker
from tests.kafka.pipeline_helpers import wait_committed, worker_story

pytestmark = pytest.mark.kafka

KEYS = [f"shop-{i}" for i in range(4)]
FLAGS = ("--model", "logreg", "--drift", "none", "--commit-every-events", "3000", "--commit-every-seconds", "1",
         "--publish-predictions")


def _streams() -> tuple[list[bytes], list[bytes]]:
    """(warm-up labeled events, then requests of 3,000 users each and their feedback 0 to 2,000 later) of all keys,
    interleaved."""
    warm, live = [], []
    for k, key in enumerate(KEYS):
        events = list(generate("agrawal", 8_000, seed=20 + k, key=key))
        warm.append(events[:2_000])
        rng = random.Random(k)
        requests = [{**e, "user": f"u{rng.randrange(3_000)}"} for e in events[2_000:]]  # an A/B test scores each once
        live.append(list(delayed_feedback(requests, 0, 2_000, seed=k)))
    return _interleave(warm), _interleave(live)


def _interleave(per_key: list[list[dict]]) -> list[bytes]:
    out = []
    for i in range(max(map(len, per_key))):
        out += [orjson.dumps(events[i]) for events in per_key if i < len(events)]
    return out


def _start_args(key: str) -> list[str]:
    return ["--key", key, "--name", f"ab-{key}", "--kind", "ab", "--arm", "tree=hoeffding-tree", "--unit", "user"]


def _outcome(decisions: list[dict]) -> list[tuple]:
    """What was decided, per key, in order: decision ids name Kafka offsets, which differ in-process."""
    return sorted((d["model_key"], d["events_seen"], d["action"], d["trigger"], d["arm"], d["experiment"],
                   d["champion_version"], d["challenger_version"]) for d in decisions)


def test_ab_tests_on_four_keys_with_two_workers_decide_exactly_once_as_in_process(kafka_bootstrap, topic_prefix, tmp_path):
    warm, live = _streams()
    control = [orjson.dumps({"key": key, "control": "start", "experiment": {
        "name": f"ab-{key}", "kind": "ab", "arms": [{"name": "tree", "spec": "hoeffding-tree"}], "unit": "user"}})
        for key in KEYS]

    # in-process, the same stream
    path = tmp_path / "stream.jsonl"
    path.write_bytes(b"\n".join(warm + control + live) + b"\n")
    embedded = subprocess.run(cli("replay", str(path), *FLAGS[:4], "--json", "--no-progress"), capture_output=True,
                              cwd=REPO, timeout=600)
    assert embedded.returncode == 0, embedded.stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in embedded.stdout.splitlines()]
    reference_summary, reference_decisions = lines[-1]["summary"], lines[:-1]
    assert sum(1 for d in reference_decisions if d["action"] == "start") == 4
    assert any(d["action"] == "promote" and d["trigger"] == "experiment" for d in reference_decisions)

    # on Kafka: the warm-up, then `stream-cd experiment start` per key, then the live traffic, two workers
    prefix = topic_prefix.rstrip(".")
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events", partitions=4)])
    produce(kafka_bootstrap, f"{prefix}.events", ((orjson.loads(raw)["key"].encode(), raw) for raw in warm))
    for key in KEYS:
        started = subprocess.run(cli("experiment", "start", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
                                     *_start_args(key)), capture_output=True, cwd=REPO, timeout=60)
        assert started.returncode == 0, started.stderr.decode()
    first = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1", "--idle-exit", "8")
    wait_committed(kafka_bootstrap, f"{prefix}.workers", 4_000, first)
    second = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w2", "--idle-exit", "8")
    time.sleep(2)
    produce(kafka_bootstrap, f"{prefix}.events", ((orjson.loads(raw)["key"].encode(), raw) for raw in live))
    summaries = [finish(w, timeout=600)[0] for w in (first, second)]

    models = {k: m for s in summaries for k, m in s["models"].items()}
    assert models == reference_summary["models"], f"{sorted(models)}\n{worker_story(first, second)}"
    decisions = list(subscribe_decisions(kafka_bootstrap, f"{prefix}.decisions", from_beginning=True))
    assert len({d["decision_id"] for d in decisions}) == len(decisions)  # exactly once
    assert _outcome(decisions) == _outcome(reference_decisions)

    served = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, f"{prefix}.predictions", expected=4 * 6_000)]
    users = {(e["key"], e["id"]): e.get("user") for e in map(orjson.loads, live) if "x" in e}
    arms: dict[tuple, set] = {}
    for s in served:
        if s["experiment"] is not None:
            arms.setdefault((s["model_key"], users[(s["model_key"], s["id"])]), set()).add(s["arm"])
    assert len(arms) > 100 and all(len(a) == 1 for a in arms.values())  # each unit served by one arm only

    status = subprocess.run(cli("experiment", "status", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
                                "--json"), capture_output=True, cwd=REPO, timeout=60)
    assert status.returncode == 0, status.stderr.decode()
    rows = [orjson.loads(line) for line in status.stdout.splitlines()]
    assert sorted(r["model_key"] for r in rows) == KEYS
    assert all(r["state"] in ("running", "promoted", "no significant difference") for r in rows), rows


def test_a_canary_killed_at_its_25_percent_step_resumes_there(kafka_bootstrap, topic_prefix, tmp_path):
    events = [orjson.dumps(e) for e in generate("agrawal", 30_000, seed=31, key="shop")]
    control = orjson.dumps({"key": "shop", "control": "start", "experiment": {
        "name": "canary-1", "kind": "canary", "unit": "request", "arms": [{"name": "tree", "spec": "hoeffding-tree"}],
        "ramp": [5, 25, 50, 100], "guardrail_margin": 0.05, "step_min_sample": 300}})
    stream = events[:3_000] + [control] + events[3_000:]
    flags = ("--model", "logreg", "--drift", "none", "--commit-every-events", "2000", "--commit-every-seconds", "1")

    path = tmp_path / "canary.jsonl"
    path.write_bytes(b"\n".join(stream) + b"\n")
    embedded = subprocess.run(cli("replay", str(path), *flags[:4], "--json", "--no-progress"), capture_output=True,
                              cwd=REPO, timeout=600)
    assert embedded.returncode == 0, embedded.stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in embedded.stdout.splitlines()]
    reference = [d for d in lines[:-1] if d["experiment"] == "canary-1"]
    steps = [(d["action"], d["traffic"]["tree"]) for d in reference if d["action"] != "keep"]
    assert steps == [("start", 0.05), ("ramp", 0.25), ("ramp", 0.5), ("promote", 1.0)], steps
    at_25 = next(d["events_seen"] for d in reference if d["action"] == "ramp" and d["traffic"]["tree"] == 0.25)
    at_50 = next(d["events_seen"] for d in reference if d["action"] == "ramp" and d["traffic"]["tree"] == 0.5)
    cut = (at_25 + at_50) // 2  # the worker is killed between the two, at the 25 % step
    assert at_50 - at_25 > 200

    prefix = topic_prefix.rstrip(".")
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events", partitions=1)])
    produce(kafka_bootstrap, f"{prefix}.events", ((b"shop", raw) for raw in stream[:cut]))
    worker = start_worker(kafka_bootstrap, prefix, *flags, "--worker-id", "w1")
    wait_committed(kafka_bootstrap, f"{prefix}.workers", cut, worker)
    worker.kill()
    worker.wait(timeout=10)
    before = [d for d in subscribe_decisions(kafka_bootstrap, f"{prefix}.decisions", from_beginning=True)
              if d["experiment"] == "canary-1"]
    assert before[-1]["traffic"]["tree"] == 0.25  # it was at the 25 % step

    produce(kafka_bootstrap, f"{prefix}.events", ((b"shop", raw) for raw in stream[cut:]))
    worker = start_worker(kafka_bootstrap, prefix, *flags, "--worker-id", "w1", "--idle-exit", "6")
    summary, printed, _ = finish(worker, timeout=300)
    resumed = [(d["action"], d["traffic"]["tree"]) for d in printed if d["experiment"] == "canary-1" and d["action"] != "keep"]
    assert resumed == [("ramp", 0.5), ("promote", 1.0)]  # from the 25 % step on, nothing of the ramp again
    assert summary == lines[-1]["summary"]
    decisions = [d for d in subscribe_decisions(kafka_bootstrap, f"{prefix}.decisions", from_beginning=True)
                 if d["experiment"] == "canary-1"]
    assert _outcome(decisions) == _outcome(reference) and len({d["decision_id"] for d in decisions}) == len(decisions)
