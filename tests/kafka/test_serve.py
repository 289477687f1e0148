"""``stream-cd serve`` on a real broker (issue 13): HTTP answers are the predictions on the
topic; no worker means a 504 naming the request; bad input is refused and never produced."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from consumers.admin import TopicSpec, ensure_topics
from stream_cd.simulate.datasets import generate
from tests.kafka.pipeline_helpers import REPO, STARTED, cli, predictions_by_id, produce, start_worker

pytestmark = pytest.mark.kafka


def start_serve(bootstrap: str, prefix: str, *flags: str) -> tuple[subprocess.Popen, str]:
    """A ``stream-cd serve --port 0`` subprocess and its URL, once it listens."""
    server = subprocess.Popen(cli("serve", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--port", "0", *flags),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    STARTED.append(server)
    line = server.stdout.readline().decode()  # printed once it listens (or nothing: it died)
    match = re.match(r"serving on (http://\S+)", line)
    assert match, f"serve printed {line!r}: {server.stderr.read().decode()[-2000:] if server.poll() is not None else ''}"
    return server, match.group(1)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()[-2000:]


@pytest.fixture
def token_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    yield path


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> list[tuple[int, object]]:
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:  # keep-alive connections, reused
        async def post(body: bytes) -> tuple[int, object]:
            async with semaphore, session.post(f"{url}/predict", data=body) as response:
                return response.status, await response.json()

        return await asyncio.gather(*(post(b) for b in bodies))


def test_a_thousand_requests_over_http_are_answered_with_the_predictions_on_the_topic(kafka_bootstrap, topic_prefix):
    prefix = topic_prefix + "served"
    ensure_topics(kafka_bootstrap, [TopicSpec(f"{prefix}.events")])
    produce(kafka_bootstrap, f"{prefix}.events", ((b"default", orjson.dumps(e)) for e in generate("agrawal", 3_000, seed=5)))
    worker = start_worker(kafka_bootstrap, prefix, "--model", "logreg", "--publish-predictions", "--worker-id", "w1")
    server, url = start_serve(kafka_bootstrap, prefix, "--timeout", "30")
    features = [e["x"] for e in generate("agrawal", 1_000, seed=21)]
    # 800 single requests (half with an id of their own, half given one) and 20 lists of 10
    singles = [orjson.dumps({"x": x, **({"id": f"h{i}"} if i % 2 else {})}) for i, x in enumerate(features[:800])]
    lists = [orjson.dumps([{"id": f"l{j}-{k}", "x": x} for k, x in enumerate(features[800 + 10 * j: 810 + 10 * j])])
             for j in range(20)]
    answered = asyncio.run(_post_all(url, singles + lists, concurrency=16))
    # a request the worker refuses (a feature that changed its kind) is answered with the worker's reason
    [(refused_status, refused)] = asyncio.run(_post_all(url, [orjson.dumps({"id": "r-kind", "x": {**features[0], "age": "old"}})], 1))
    stop(server)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)

    assert [status for status, _ in answered] == [200] * len(answered)
    answers = [a for _, a in answered[:800]] + [a for _, body in answered[800:] for a in body]
    assert len(answers) == 1_000 and len({a["id"] for a in answers}) == 1_000
    assert [a["id"] for a in answers[1:800:2]] == [f"h{i}" for i in range(1, 800, 2)]
    assert [a["id"] for a in answers[800:810]] == [f"l0-{k}" for k in range(10)]
    on_topic = predictions_by_id(kafka_bootstrap, prefix)
    for answer in answers:
        assert {(answer["id"], answer["arm"], answer["version"], answer["prediction"])} == set(on_topic[answer["id"]])
        assert answer["model_key"] == "default" and answer["experiment"] is None
    assert len({a["prediction"] for a in answers}) == 2  # a trained model: both classes are served
    assert refused_status == 422 and refused["id"] == "r-kind" and "r-kind" not in on_topic
    assert refused["error"].startswith("the worker refused request 'r-kind': feature 'age' is 'old', a string")


def _events_on_topic(bootstrap: str, topic: str) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records: list = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(orjson.loads(r.value) for r in batch)
        return records
    finally:
        consumer.close()


async def _session_checks(url: str) -> dict:
    auth = {"Authorization": "Bearer s3cret-token"}
    out = {}
    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, body: bytes | None = None, headers: dict | None = None):
            async with session.request(method, f"{url}{path}", data=body, headers=headers) as response:
                return response.status, await response.json()

        out["health"] = await call("GET", "/healthz")
        out["no token"] = await call("POST", "/predict", b'{"x": {"a": 1}}')
        out["wrong token"] = await call("POST", "/feedback", b'{"id": "r1", "y": true}', {"Authorization": "Bearer no"})
        out["malformed"] = await call("POST", "/predict", b'{"key": "shop", "x": {"a": 1', auth)
        out["invalid"] = await call("POST", "/predict", b'{"key": "shop", "x": {"a": null}}', auth)
        out["unheld"] = await call("POST", "/predict", b'{"key": "shop", "id": "nobody-answers", "x": {"a": 1}}', auth)
        out["feedback"] = await call("POST", "/feedback", b'{"key": "shop", "id": "nobody-answers", "y": true}', auth)
    return out


def test_no_worker_means_a_504_naming_the_request_and_bad_input_a_400_never_produced(kafka_bootstrap, topic_prefix, token_file):
    prefix = topic_prefix + "unheld"  # no worker reads this prefix
    server, url = start_serve(kafka_bootstrap, prefix, "--timeout", "0.5", "--token-file", str(token_file))
    checks = asyncio.run(_session_checks(url))
    stop(server)

    assert checks["health"] == (200, {"status": "ok", "waiting": 0})
    for name in ("no token", "wrong token"):
        assert checks[name][0] == 401 and "token" in checks[name][1]["error"]
    status, body = checks["malformed"]
    assert status == 400 and body["error"].startswith("malformed JSON: unexpected end of data")
    assert checks["invalid"] == (400, {"error": "feature 'a' is null; features must be finite numbers, strings or booleans"})
    status, body = checks["unheld"]
    assert status == 504 and body["id"] == "nobody-answers" and "'nobody-answers'" in body["error"]
    assert checks["feedback"] == (202, {"produced": 1, "ids": ["nobody-answers"]})
    # only what was valid and authorised reached the events topic, keyed as it came
    assert _events_on_topic(kafka_bootstrap, f"{prefix}.events") == [
        {"key": "shop", "id": "nobody-answers", "x": {"a": 1}}, {"key": "shop", "id": "nobody-answers", "y": True}]
