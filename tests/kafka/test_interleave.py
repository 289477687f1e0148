"""Interleaving end to end on a real broker (issue 16): ranking requests and their delayed clicks
replayed into the events topic after `stream-cd experiment start --kind interleave`; a worker
serves team-drafted rankings on <prefix>.predictions (each item with the arm that placed it),
joins the clicks, is killed (SIGKILL) mid-experiment, resumes from its checkpoint, and publishes
the promotion exactly once: the same outcome as the embedded replay."""

from __future__ import annotations

import subprocess

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from stream_cd import subscribe_decisions
from tests.kafka.pipeline_helpers import REPO, cli, finish, read_topic, start_worker, wait_committed

pytestmark = pytest.mark.kafka

MODEL = ("--model", "tests.stream_cd.user_models:item_only_ranker", "--drift", "none")
WORKER = (*MODEL, "--commit-every-events", "100", "--commit-every-seconds", "1", "--publish-predictions")
START = ("--key", "search", "--name", "il-1", "--kind", "interleave", "--arm", "smart=logreg")
DEFINITION = {"name": "il-1", "kind": "interleave", "arms": [{"name": "smart", "spec": "logreg"}]}


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cli(*args), capture_output=True, cwd=REPO, timeout=timeout)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done


def _outcome(decisions: list[dict]) -> list[tuple]:
    return sorted((d["events_seen"], d["action"], d["trigger"], d["arm"], d["experiment"], d["champion_version"],
                   d["challenger_version"]) for d in decisions)


def test_interleaving_through_kafka_serves_drafted_rankings_and_decides_once_as_in_process(
        kafka_bootstrap, topic_prefix, tmp_path):
    experiment = tmp_path / "il.json"
    experiment.write_bytes(orjson.dumps({"key": "search", "experiment": DEFINITION}))
    stream = tmp_path / "search.jsonl"
    run("generate", "ranking", "--n-users", "120", "--queries-per-user", "10", "--items", "500", "--seed", "16",
        "--key", "search", "--feedback-delay", "1:40", *MODEL, "--experiment", str(experiment), "--out", str(stream))
    lines = stream.read_bytes().splitlines()
    requests = [orjson.loads(line) for line in lines if b'"items"' in line]

    # in-process: the reference
    served_file = tmp_path / "served.jsonl"
    embedded = run("replay", str(stream), *MODEL, "--experiment", str(experiment), "--json", "--no-progress",
                   "--predictions", str(served_file))
    printed = [orjson.loads(line) for line in embedded.stdout.splitlines()]
    reference_summary, reference = printed[-1]["summary"], printed[:-1]
    assert reference_summary["invalid"] == 0
    promote = [d for d in reference if d["action"] == "promote"]
    assert len(promote) == 1 and promote[0]["arm"] == "smart" and promote[0]["evidence"]["winner"] == "smart"
    at = promote[0]["events_seen"] - 1  # the control message comes first: lines[at - 1] decided
    assert at > 300
    cut = at // 2  # the worker is killed mid-experiment, before the decision
    reference_served = {s["id"]: s for s in map(orjson.loads, served_file.read_bytes().splitlines())}

    # on Kafka: the experiment, then the first part, a worker killed once it committed it
    prefix = topic_prefix.rstrip(".")
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events", partitions=1)])
    run("experiment", "start", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, *START)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"\n".join(lines[:cut]) + b"\n")
    rest.write_bytes(b"\n".join(lines[cut:]) + b"\n")
    run("replay", str(first), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--no-progress")
    worker = start_worker(kafka_bootstrap, prefix, *WORKER, "--worker-id", "w1")
    wait_committed(kafka_bootstrap, f"{prefix}.workers", cut + 1, worker)
    worker.kill()
    worker.wait(timeout=10)
    assert not [d for d in subscribe_decisions(kafka_bootstrap, f"{prefix}.decisions", from_beginning=True)
                if d["action"] == "promote"]

    # the rest, and the same worker restarted from its checkpoint
    run("replay", str(rest), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--no-progress")
    # it stops once it has taken in the rest (idle exit only as a safety: a loaded machine can be slow to start)
    worker = start_worker(kafka_bootstrap, prefix, *WORKER, "--worker-id", "w1", "--max-events", str(len(lines) - cut),
                          "--idle-exit", "60")
    summary, resumed, _ = finish(worker, timeout=300)
    assert [d["action"] for d in resumed if d["action"] not in ("checkpoint", "keep")] == ["promote"]
    assert summary == reference_summary

    decisions = list(subscribe_decisions(kafka_bootstrap, f"{prefix}.decisions", from_beginning=True))
    assert len({d["decision_id"] for d in decisions}) == len(decisions)  # exactly once
    assert sum(d["action"] == "promote" for d in decisions) == 1
    assert _outcome(decisions) == _outcome(reference)
    kafka_promote = next(d for d in decisions if d["action"] == "promote")
    assert kafka_promote["evidence"] == promote[0]["evidence"]

    # every request's served ranking, once, each item with the arm that placed it, as in-process
    records = read_topic(kafka_bootstrap, f"{prefix}.predictions", expected=len(requests))
    served = [orjson.loads(r.value) for r in records]
    assert len(served) == len(requests) == len({s["id"] for s in served})
    assert {s["id"]: s["ranking"] for s in served} == {i: s["ranking"] for i, s in reference_served.items()}
    interleaved = [s for s in served if s["experiment"] == "il-1"]
    assert len(interleaved) >= promote[0]["evidence"]["impressions"]
    for s in interleaved:
        assert s["arm"] == "interleaved" and sorted(item["arm"] for item in s["ranking"]) == ["control"] * 5 + ["smart"] * 5
    after = [s for s in served if s["experiment"] is None]
    assert after and all({item["arm"] for item in s["ranking"]} == {"champion"} for s in after)

    status = run("experiment", "status", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--json")
    row = orjson.loads(status.stdout.splitlines()[-1])
    assert (row["experiment"], row["kind"], row["state"]) == ("il-1", "interleave", "promoted")
    assert row["wins"] == promote[0]["evidence"]["wins"] and row["losses"] == promote[0]["evidence"]["losses"]
