"""Issue 17's acceptance through the real broker: /metrics scraped while a stream is consumed.

The worker starts with a backlog on two partitions; the test scrapes it every
0.2 s and parses each answer with prometheus_client's text parser: consumed
rises to what was sent, the lag falls to 0, the latency histogram counts every
learned event, and the log lines (JSON) name the worker.
"""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest

from consumers.admin import TopicSpec, ensure_topics
from stream_cd.broker.config import free_port
from stream_cd.cli import main
from stream_cd.observe.exporter import SERIES
from stream_cd.simulate.datasets import generate
from tests.kafka.pipeline_helpers import finish, produce, start_worker
from tests.metrics_helpers import one as _one, parse_scrape

pytestmark = pytest.mark.kafka

N_PER_KEY = 30_000
INVALID = [b"not json", b"[1, 2]", b'{"key": "a", "x": {"f": [1]}, "y": true}']


def _scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return parse_scrape(answer.read().decode())


def test_metrics_follow_a_stream_consumed_through_the_broker(kafka_bootstrap, topic_prefix, tmp_path):
    prefix = topic_prefix.rstrip(".")
    topic = f"{prefix}.events"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=2)])
    messages = []
    for key, seed in (("a", 1), ("b", 2)):
        messages += [(key.encode(), orjson.dumps(e)) for e in generate("agrawal", N_PER_KEY, seed=seed, key=key)]
    messages[100:100] = [(b"a", raw) for raw in INVALID]
    sent = produce(kafka_bootstrap, topic, messages)
    port = free_port()
    worker = start_worker(kafka_bootstrap, prefix, "--worker-id", "metrics-w1", "--metrics-port", str(port),
                          "--idle-exit", "10", "--version-every", "5000", "--log-format", "json",
                          "--shadow", "logreg")
    scrapes: list[dict[str, list]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            s = _scrape(port)
        except OSError as err:
            assert worker.poll() is None, f"{err!r}: {worker.stderr.read().decode()[-2000:]}"
            time.sleep(0.2)
            continue
        scrapes.append(s)
        lag = [x.value for x in s.get("stream_cd_consumer_lag_messages", [])]
        if _one(s, "stream_cd_messages_consumed_total") == sent and len(lag) == 2 and sum(lag) == 0:
            break
        time.sleep(0.2)
    summary, printed, stderr = finish(worker, timeout=120)
    final = scrapes[-1]

    families = set(final["families"])
    assert {name.removesuffix("_total") for name in SERIES} <= families
    with_samples = {name for s in scrapes for name in s}
    for name, (kind, _, _) in SERIES.items():
        wanted = {"histogram": f"{name}_count"}.get(kind, name)
        if name not in ("stream_cd_arm_rolling_mean_absolute_error", "stream_cd_drift_alarms_total"):
            assert wanted in with_samples, name  # (no regression task, no drift in this stream)

    consumed = [_one(s, "stream_cd_messages_consumed_total") for s in scrapes]
    assert consumed == sorted(consumed) and consumed[-1] == sent == 2 * N_PER_KEY + len(INVALID)
    lags = [sum(x.value for x in s["stream_cd_consumer_lag_messages"]) for s in scrapes if s.get("stream_cd_consumer_lag_messages")]
    assert max(lags) > 0 and lags[-1] == 0, lags
    assert {x.labels["partition"] for x in final["stream_cd_consumer_lag_messages"]} == {"0", "1"}

    learned = sum(m["learned"] for m in summary["models"].values())
    assert learned == 2 * N_PER_KEY
    assert _one(final, "stream_cd_event_to_learned_seconds_count") == learned
    assert _one(final, "stream_cd_event_to_learned_seconds_bucket", le="+Inf") == learned
    assert {x.labels["reason"]: x.value for x in final["stream_cd_messages_invalid_total"]} == {
        "not_json": 1, "not_object": 1, "bad_features": 1}
    for key in ("a", "b"):
        checkpoints = sum(1 for d in printed if d["model_key"] == key and d["action"] == "checkpoint")
        assert checkpoints == N_PER_KEY // 5000
        assert _one(final, "stream_cd_decisions_total", model_key=key, action="checkpoint", trigger="volume") == checkpoints
        assert _one(final, "stream_cd_arm_info", model_key=key, arm="champion", version=f"v1.{checkpoints}", spec="logreg") == 1
        assert 0.5 < _one(final, "stream_cd_arm_rolling_accuracy_ratio", model_key=key, arm="challenger") <= 1
        assert _one(final, "stream_cd_experiment_sample_size", model_key=key, experiment="shadow", arm="challenger") > 0
    assert _one(final, "stream_cd_rebalances_total") >= 1 and _one(final, "stream_cd_restores_total") >= 1
    assert _one(final, "stream_cd_worker_info", worker_id="metrics-w1", delivery="exactly-once") == 1

    logs = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert logs and all(line["worker_id"] == "metrics-w1" for line in logs)
    events = [line["event"] for line in logs]
    assert events.count("decision") == len(printed)
    assert "rebalance" in events and "restore" in events

    # the same decisions, read back from the control topic, make the run report
    report = tmp_path / "report.html"
    assert main(["report", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--out", str(report)]) == 0
    page = report.read_text()
    assert "Model key a" in page and "Model key b" in page and page.count("data:image/png;base64,") == 2
