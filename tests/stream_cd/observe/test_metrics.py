"""The worker's metrics on the embedded transport: what the series say, and that labels stay bounded."""

from __future__ import annotations

import orjson
from prometheus_client.parser import text_string_to_metric_families

from stream_cd.config import PipelineConfig
from stream_cd.embedded import EmbeddedTransport
from stream_cd.observe.exporter import SERIES, render
from stream_cd.observe.metrics import OTHER, WorkerMetrics
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.datasets import generate
from stream_cd.transport import Topics
from stream_cd.worker import Worker
from tests.metrics_helpers import one as value, parse_scrape


def scrape(metrics: WorkerMetrics) -> dict[str, list]:
    return parse_scrape(render(metrics).decode())


def run(lines: list[bytes], metrics: WorkerMetrics, clock=lambda: 1_000, **config) -> Pipeline:
    pipeline = Pipeline(PipelineConfig(**{"model": "logreg", "shadow": "logreg", "drift": "none", **config}))
    transport = EmbeddedTransport(lines, clock=clock)
    Worker(transport, pipeline, Topics(), observer=metrics, batch_size=100).run()
    return pipeline


def test_one_stream_through_the_worker_moves_every_listed_series() -> None:
    lines = [orjson.dumps(e) for e in generate("agrawal", n=3000, seed=1)]
    lines[10:10] = [b"not json", b"[1]", b'{"x": {"a": [1]}, "y": true}', b'{"id": "nope", "y": true}']
    lines.append(b'{"key": "b", "id": "r1", "x": {"f": 1.0}}')  # a request of another key, waiting for feedback
    metrics = WorkerMetrics(info={"worker_id": "w1"})
    pipeline = run(lines, metrics, version_every=1000, report_every=1000, min_sample=1000)
    s = scrape(metrics)
    assert value(s, "stream_cd_messages_consumed_total") == len(lines)
    assert {x.labels["reason"]: x.value for x in s["stream_cd_messages_invalid_total"]} == {
        "not_json": 1, "not_object": 1, "bad_features": 1, "feedback_unknown": 1}
    learned = sum(m["learned"] for m in pipeline.summary()["models"].values())
    assert learned == 3000
    assert value(s, "stream_cd_event_to_learned_seconds_count") == learned
    assert value(s, "stream_cd_event_to_learned_seconds_bucket", le="+Inf") == learned
    assert value(s, "stream_cd_commits_total") >= 1
    assert value(s, "stream_cd_commit_duration_seconds_count") == value(s, "stream_cd_commits_total")
    assert value(s, "stream_cd_decisions_total", model_key="default", action="checkpoint", trigger="volume") == 3
    assert value(s, "stream_cd_decisions_total", model_key="default", action="keep", trigger="comparator") >= 1
    assert value(s, "stream_cd_arm_info", model_key="default", arm="champion", version="v1.3", spec="logreg") == 1
    accuracy = value(s, "stream_cd_arm_rolling_accuracy_ratio", model_key="default", arm="champion")
    assert 0.6 < accuracy <= 1.0
    assert value(s, "stream_cd_exposures_pending", model_key="b") == 1
    assert value(s, "stream_cd_experiment_traffic_ratio", model_key="default", experiment="shadow", arm="champion") == 1
    assert value(s, "stream_cd_experiment_traffic_ratio", model_key="default", experiment="shadow", arm="challenger") == 0
    assert value(s, "stream_cd_experiment_sample_size", model_key="default", experiment="shadow", arm="challenger") == 3000
    assert value(s, "stream_cd_model_keys", labeled="true") == 2
    exposed = {family.name for family in text_string_to_metric_families(render(metrics).decode())}
    assert {name.removesuffix("_total") for name in SERIES} - exposed == set()


def test_latency_counts_the_time_from_the_message_timestamp_to_the_batch_learned() -> None:
    lines = [orjson.dumps(e) for e in generate("agrawal", n=200, seed=2)]
    metrics = WorkerMetrics()
    run(lines, metrics, clock=lambda: 0)  # every message stamped at the epoch: decades old by now
    s = scrape(metrics)
    assert value(s, "stream_cd_event_to_learned_seconds_count") == 200
    assert value(s, "stream_cd_event_to_learned_seconds_bucket", le="300.0") == 0
    assert value(s, "stream_cd_event_to_learned_seconds_sum") > 200 * 1e9


def test_labels_are_capped_at_the_busiest_keys_and_no_counter_goes_down() -> None:
    lines = []
    for key, n in (("a", 400), ("b", 300), ("c", 200), ("d", 100)):
        lines += [orjson.dumps({**e, "key": key}) for e in generate("sea", n=n, seed=len(key))]
    metrics = WorkerMetrics(max_keys=2)
    run(lines, metrics, shadow="none", version_every=100)
    first = scrape(metrics)
    keys = {x.labels["model_key"] for x in first["stream_cd_model_key_events_seen"]}
    assert keys == {"a", "b", OTHER}
    assert value(first, "stream_cd_model_key_events_seen", model_key=OTHER) == 300
    assert value(first, "stream_cd_model_keys", labeled="false") == 2
    decisions = {x.labels["model_key"]: x.value for x in first["stream_cd_decisions_total"]}
    assert decisions == {"a": 4, "b": 3, OTHER: 3}  # a checkpoint every 100 events of each key
    labels = {x.labels.get("model_key") for name, samples in first.items() if name != "families" for x in samples} - {None}
    assert labels <= {"a", "b", OTHER}
    second = scrape(metrics)
    assert {x.labels["model_key"]: x.value for x in second["stream_cd_decisions_total"]} == decisions


def test_an_ab_test_shows_its_traffic_and_sample_per_arm_beside_the_shadow() -> None:
    start = {"key": "default", "control": "start", "experiment": {
        "name": "ab-1", "kind": "ab", "unit": "request", "arms": [{"name": "fresh", "spec": "logreg"}],
        "weights": [50, 50], "max_sample": 100_000}}
    lines = [orjson.dumps(start)] + [orjson.dumps(e) for e in generate("sea", n=4000, seed=4)]
    metrics = WorkerMetrics()
    pipeline = run(lines, metrics)
    s = scrape(metrics)
    model = pipeline.models["default"]
    assert model.running is not None and model.running.name == "ab-1"
    traffic = {x.labels["arm"]: x.value for x in s["stream_cd_experiment_traffic_ratio"] if x.labels["experiment"] == "ab-1"}
    assert set(traffic) == {"control", "fresh"} and abs(sum(traffic.values()) - 1) < 1e-9 and traffic["fresh"] > 0
    sample = {x.labels["arm"]: x.value for x in s["stream_cd_experiment_sample_size"] if x.labels["experiment"] == "ab-1"}
    assert sample["fresh"] > 1000 and sample["control"] > 1000
    assert sample["fresh"] + sample["control"] == 4000
    fresh = value(s, "stream_cd_arm_rolling_accuracy_ratio", model_key="default", arm="fresh")
    assert 0.7 < fresh <= 1.0
    shadow = {x.labels["arm"] for x in s["stream_cd_experiment_sample_size"] if x.labels["experiment"] == "shadow"}
    assert shadow == {"champion", "challenger"}
