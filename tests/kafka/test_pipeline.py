"""The core pipeline through a real Apache Kafka broker (issue 3's acceptance)."""

from __future__ import annotations

import signal
import subprocess
import time

import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from consumers.admin import TopicSpec, ensure_topics
from stream_cd import subscribe_decisions
from stream_cd.simulate.datasets import generate
from stream_cd.transport import DEAD_LETTER_ORIGIN, DEAD_LETTER_REASON, DEAD_LETTER_TRUNCATED
from consumers.checkpoints import read_checkpoints
from stream_cd.pipeline import model_key_of_record
from stream_cd.state.signing import load_state
from tests.kafka.pipeline_helpers import (
    REPO,
    TEST_STATE_KEY,
    cli,
    finish,
    finish_with_counts,
    worker_story,
    produce,
    read_topic,
    start_worker,
)

pytestmark = pytest.mark.kafka

CHANGE_AT = 20_000


@pytest.fixture
def prefix(topic_prefix: str) -> str:
    return topic_prefix.rstrip(".")


def _write_jsonl(path, events) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def test_drift_retrain_and_promotion_end_to_end(kafka_bootstrap, prefix, tmp_path):
    stream = tmp_path / "agrawal.jsonl"
    _write_jsonl(stream, generate("agrawal", 40_000, seed=7, drift_at=CHANGE_AT))
    replay = subprocess.run(
        cli("replay", str(stream), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix),
        cwd=REPO, capture_output=True, timeout=180,
    )
    assert replay.returncode == 0, replay.stderr.decode()

    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--shadow", "hoeffding-tree", "--idle-exit", "3")
    summary, printed, _ = finish(worker, timeout=300)
    model = summary["models"]["default"]
    assert summary["events"] == 40_000 and summary["invalid"] == 0
    assert model["learned"] == 40_000

    seen = list(subscribe_decisions(kafka_bootstrap, f"{prefix}.decisions", from_beginning=True))
    assert seen == printed  # the subscriber sees exactly what the worker published
    drift = [d for d in seen if d["trigger"] == "drift"]
    assert any(d["action"] == "retrain" and CHANGE_AT <= d["events_seen"] <= CHANGE_AT + 1_500 for d in drift), drift
    assert not [d for d in drift if 5_000 <= d["events_seen"] < CHANGE_AT]
    promotions = [d for d in seen if d["action"] == "promote"]
    assert promotions and all(d["evidence"]["p_value"] < 0.01 for d in promotions)
    assert model["champion_spec"] == "hoeffding-tree"
    assert model["promotions"] == len(promotions)
    assert len({d["decision_id"] for d in seen}) == len(seen)
    for d in seen:
        assert set(d) >= {"decision_id", "model_key", "action", "trigger", "champion_version",
                          "challenger_version", "events_seen", "evidence", "ts"}


FETCH_PATHS = pytest.mark.parametrize("fetch", [(), ("--fetch-inline",)], ids=["fetch-process", "fetch-inline"])


@FETCH_PATHS
def test_phishing_accuracy_equals_progressive_val_score(kafka_bootstrap, prefix, tmp_path, fetch):
    expected = evaluate.progressive_val_score(
        datasets.Phishing(), preprocessing.StandardScaler() | linear_model.LogisticRegression(), metrics.Accuracy()
    ).get()
    events = list(generate("phishing", 1250))
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", orjson.dumps(e)) for e in events))
    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--drift", "none", "--shadow", "none",
                          "--idle-exit", "3", *fetch)
    summary, _, _ = finish(worker)
    assert summary["models"]["default"]["metric"] == {"name": "Accuracy", "value": expected}


def _malformed() -> list[tuple[bytes | None, bytes | None]]:
    """200 invalid messages covering every kind the validator rejects."""
    kinds = [
        b"\xff\xfe\x00garbage",                          # undecodable bytes
        b'{"x": {"a": 1}, "y": tru',                     # truncated JSON
        b"[1, 2, 3]",                                    # not an object
        b'"just a string"',                              # not an object
        b'{"y": true}',                                  # x missing
        b'{"x": [1, 2], "y": true}',                     # x not an object
        b'{"x": {"a": [1, 2]}, "y": true}',              # nested list feature
        b'{"x": {"a": {"b": 1}}, "y": true}',            # nested object feature
        b'{"x": {"a": null}, "y": true}',                # null feature
        b'{"x": {"a": 1e999}, "y": true}',               # non-finite number
        b'{"x": {"a": 1}, "y": 0.5}',                    # label of the wrong kind for classification
        b'{"x": {"a": 1}, "y": {"c": 1}}',               # label not a scalar
        b'{"key": 7, "x": {"a": 1}, "y": true}',         # key not a string
        b'{"x": {"a": 1}, "ts": -5, "y": true}',         # bad timestamp
        b'{"x": {"a": "' + b"z" * 70_000 + b'"}, "y": true}',  # over the size limit
        b"",                                             # empty value
        None,                                            # tombstone
    ]
    return [(b"default", kinds[i % len(kinds)]) for i in range(200)]


@FETCH_PATHS
def test_bad_input_goes_to_dead_letter_and_worker_keeps_running(kafka_bootstrap, prefix, fetch):
    valid = [orjson.dumps(e) for e in generate("sea", 1_000, seed=3)]
    bad = _malformed()
    mixed: list[tuple[bytes | None, bytes | None]] = []
    for i, raw in enumerate(valid):
        mixed.append((b"default", raw))
        if i % 5 == 4:
            mixed.append(bad[i // 5])
    assert len(mixed) == 1_200
    produce(kafka_bootstrap, f"{prefix}.events", mixed)
    # a dead-letter topic made elsewhere, taking less than the largest bad message: its dead letter is cut
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.dead-letter", config={"max.message.bytes": "50000"})])

    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--shadow", "none", *fetch)
    letters = read_topic(kafka_bootstrap, f"{prefix}.dead-letter", expected=200, deadline_s=90)
    assert worker.poll() is None, "the worker died of bad input"
    extra = [orjson.dumps(e) for e in generate("sea", 50, seed=4)]
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", raw) for raw in extra))
    time.sleep(3)
    worker.send_signal(signal.SIGTERM)
    summary, _, _ = finish(worker, timeout=30)

    assert summary["invalid"] == 200
    assert summary["events"] == 1_250
    assert summary["models"]["default"]["learned"] == 1_050
    assert len(letters) == 200
    cut = [r for r in letters if DEAD_LETTER_TRUNCATED in dict(r.headers)]
    whole = {len(v or b"") for _, v in bad if len(v or b"") > 50_000}
    assert [int(dict(r.headers)[DEAD_LETTER_TRUNCATED]) for r in cut] == [*whole] * len(cut) and len(cut) >= 1
    assert {len(r.value) for r in cut} == {50_000 - 16 * 1024}  # what the topic takes, less room for the headers
    restored = [next(v for _, v in bad if v and v.startswith(r.value)) if r in cut else r.value for r in letters]
    assert sorted((v or b"") for v in restored) == sorted((value or b"") for _, value in bad)
    for record in letters:
        headers = dict(record.headers)
        assert headers[DEAD_LETTER_REASON], record
        assert headers[DEAD_LETTER_ORIGIN].startswith(f"{prefix}.events/".encode())
    reasons = {dict(r.headers)[DEAD_LETTER_REASON].decode() for r in letters}
    assert any("over the limit" in r for r in reasons) and any("not valid JSON" in r for r in reasons)
    assert any("classification" in r for r in reasons) and any("message has no value" in r for r in reasons)


def test_two_workers_share_partitions_and_learn_each_event_once(kafka_bootstrap, prefix, tmp_path):
    topic = f"{prefix}.events"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=4)])
    keys = [f"model-{i}" for i in range(4)]
    workers = [  # two on one host: each needs its own id (the default, the host name, is refused twice)
        start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--idle-exit", "6", "--worker-id", f"w{i}")
        for i in range(2)
    ]
    time.sleep(4)  # both join the group before the stream starts
    stream = tmp_path / "keys.jsonl"
    per_key = 2_500
    _write_jsonl(
        stream,
        (
            {**e, "key": keys[i % 4]}
            for i, e in enumerate(generate("agrawal", per_key * 4, seed=11))
        ),
    )
    replay = subprocess.run(
        cli("replay", str(stream), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--rate", "2500"),
        cwd=REPO, capture_output=True, timeout=180,
    )
    assert replay.returncode == 0, replay.stderr.decode()
    counts = [finish_with_counts(w, timeout=120)[1] for w in workers]
    assert all(c["consumed"] > 0 for c in counts), f"a worker got no partition: {counts}"

    learned = {}
    for key, versions in read_checkpoints(kafka_bootstrap, f"{prefix}.checkpoints").items():
        model_key = model_key_of_record(key)
        if model_key is not None:
            learned[model_key] = load_state(versions[-1][2], TEST_STATE_KEY.encode(), key, key).learned
    assert learned == {key: per_key for key in keys}, worker_story(*workers)
