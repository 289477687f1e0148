"""The worker's metrics as Prometheus series, served on ``/metrics``.

The one module that imports prometheus_client. A collector builds every
series from :class:`~stream_cd.observe.metrics.WorkerMetrics` when scraped,
so nothing is counted twice and the worker pays nothing per event for series
it does not feed itself. :data:`SERIES` lists them all (name, type, labels,
help): the README's table, the Grafana dashboard and the tests check against it.

>>> from stream_cd.observe.metrics import WorkerMetrics
>>> text = render(WorkerMetrics(info={"worker_id": "w1"})).decode()
>>> 'stream_cd_messages_consumed_total 0.0' in text, 'stream_cd_worker_info{worker_id="w1"} 1.0' in text
(True, True)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from stream_cd.errors import ConfigError
from stream_cd.observe.latency import LatencyHistogram
from stream_cd.observe.metrics import OTHER, WorkerMetrics
from stream_cd.observe.reasons import REASON_CLASSES

__all__ = ["SERIES", "WorkerCollector", "render", "serve_metrics"]

# name (as exposed; a counter's _total and an info's _info included), type, labels, help
SERIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "stream_cd_worker_info": ("info", ("worker_id", "group", "topic", "delivery"), "The worker: its id, group, events topic and delivery mode."),
    "stream_cd_messages_consumed_total": ("counter", (), "Messages consumed from the events topic, valid or not."),
    "stream_cd_messages_invalid_total": ("counter", ("reason",), f"Invalid messages sent to the dead-letter topic, by reason class ({', '.join(REASON_CLASSES)})."),
    "stream_cd_consumer_lag_messages": ("gauge", ("partition",), "Messages between the worker's position and the end of each partition it holds."),
    "stream_cd_partitions_held": ("gauge", (), "Partitions of the events topic this worker holds."),
    "stream_cd_event_to_learned_seconds": ("histogram", (), "From a labeled event's or a feedback's message timestamp to the end of the batch in which the worker learned it."),
    "stream_cd_commits_total": ("counter", (), "Commits handed to the transport: outputs, checkpoints and offsets."),
    "stream_cd_commit_duration_seconds": ("histogram", (), "Time the worker spends on a commit (pickling and signing checkpoints, handing the transaction over); the broker's round trips land while it goes on."),
    "stream_cd_commit_failures_total": ("counter", (), "Failed commits (or a failed transport): the work since the last commit was dropped and redone."),
    "stream_cd_checkpoints_written_total": ("counter", (), "Signed model-state checkpoints written."),
    "stream_cd_rebalances_total": ("counter", (), "Consumer-group rebalances this worker went through."),
    "stream_cd_restores_total": ("counter", (), "Restores of model state from the checkpoints topic (after an assignment or a rollback)."),
    "stream_cd_restored_records_total": ("counter", ("outcome",), "State records read in restores: restored, or refused (a bad signature or a broken pickle)."),
    "stream_cd_model_keys": ("gauge", ("labeled",), "Model keys held: with a label of their own (true) or summed into model_key=\"__other__\" (false)."),
    "stream_cd_model_key_events_seen": ("gauge", ("model_key",), "Events of the model key taken in (requests, feedback and labeled events), its checkpointed history included."),
    "stream_cd_arm_info": ("info", ("model_key", "arm", "version", "spec"), "Each arm of a model key: the champion's version is arm=\"champion\"."),
    "stream_cd_arm_rolling_accuracy_ratio": ("gauge", ("model_key", "arm"), "Accuracy of each arm over about the last --performance-window scored events (classification)."),
    "stream_cd_arm_rolling_mean_absolute_error": ("gauge", ("model_key", "arm"), "Mean absolute error of each arm over about the last --performance-window scored events (regression)."),
    "stream_cd_drift_alarms_total": ("counter", ("model_key",), "Drift alarms (a rise in the champion's loss): each starts a retrain, or a reset."),
    "stream_cd_decisions_total": ("counter", ("model_key", "action", "trigger"), "Decisions published, by action and trigger."),
    "stream_cd_exposures_pending": ("gauge", ("model_key",), "Requests waiting for their feedback."),
    "stream_cd_sessions_held": ("gauge", ("model_key",), "Sessions whose adaptation state the model key holds."),
    "stream_cd_experiment_traffic_ratio": ("gauge", ("model_key", "experiment", "arm"), "Share of the units each arm of a running experiment serves (the shadow: the champion all of them)."),
    "stream_cd_experiment_sample_size": ("gauge", ("model_key", "experiment", "arm"), "Scored outcomes of each arm in a running experiment's test (the shadow: the pairs; A/B/n and canary: the requests it served)."),
}


def _family(name: str, value_labels: tuple[str, ...] | None = None):
    kind, labels, doc = SERIES[name]
    labels = value_labels if value_labels is not None else labels
    if kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    if kind == "info":
        return InfoMetricFamily(name.removesuffix("_info"), doc, labels=())
    raise ValueError(kind)


def _histogram(name: str, h: LatencyHistogram) -> HistogramMetricFamily:
    cumulative = h.cumulative()
    buckets = [(repr(float(b)), c) for b, c in zip(h.bounds_s, cumulative)] + [("+Inf", cumulative[-1])]
    return HistogramMetricFamily(name, SERIES[name][2], buckets=buckets, sum_value=h.sum_s)


class WorkerCollector(Collector):
    """Every series of :data:`SERIES`, built from a :class:`WorkerMetrics` at each scrape."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self._lock = threading.Lock()  # scrapes may overlap; the lag source's client is not thread-safe

    def collect(self) -> Iterator:
        with self._lock:
            yield from self._collect()

    def _collect(self) -> Iterator:
        m = self.metrics
        worker = m.worker
        stats = None if worker is None else worker.stats
        info = _family("stream_cd_worker_info")
        info.add_metric([], {k: str(v) for k, v in m.info.items()})
        yield info
        yield self._counter("stream_cd_messages_consumed_total", m.consumed())
        invalid = _family("stream_cd_messages_invalid_total")
        for reason, n in sorted(m.invalid.items()):
            invalid.add_metric([reason], n)
        yield invalid
        lag = _family("stream_cd_consumer_lag_messages")
        for partition, behind in sorted(m.lag().items()):
            lag.add_metric([str(partition)], behind)
        yield lag
        yield self._gauge("stream_cd_partitions_held", len(m.held))
        yield _histogram("stream_cd_event_to_learned_seconds", m.latency)
        yield self._counter("stream_cd_commits_total", 0 if stats is None else stats.commits)
        yield _histogram("stream_cd_commit_duration_seconds", m.commit_seconds)
        yield self._counter("stream_cd_commit_failures_total", m.commit_failures)
        yield self._counter("stream_cd_checkpoints_written_total", 0 if stats is None else stats.checkpoints_written)
        yield self._counter("stream_cd_rebalances_total", m.rebalances)
        yield self._counter("stream_cd_restores_total", m.restores)
        records = _family("stream_cd_restored_records_total")
        records.add_metric(["restored"], m.restored_records)
        records.add_metric(["refused"], m.refused_records)
        yield records
        yield from self._per_key()

    def _per_key(self) -> Iterator:
        m = self.metrics
        top, rest = m.select(m.models())
        keys = _family("stream_cd_model_keys")
        keys.add_metric(["true"], len(top))
        keys.add_metric(["false"], len(rest))
        yield keys
        seen = _family("stream_cd_model_key_events_seen")
        arms = InfoMetricFamily("stream_cd_arm", SERIES["stream_cd_arm_info"][2], labels=("model_key", "arm"))
        accuracy = _family("stream_cd_arm_rolling_accuracy_ratio")
        mae = _family("stream_cd_arm_rolling_mean_absolute_error")
        pending = _family("stream_cd_exposures_pending")
        sessions = _family("stream_cd_sessions_held")
        traffic = _family("stream_cd_experiment_traffic_ratio")
        sample = _family("stream_cd_experiment_sample_size")
        for key, model in top:
            view = m.key_view(model)
            seen.add_metric([key], model.events_seen)
            rolling = view["rolling"]
            family = accuracy if rolling["metric"] == "Accuracy" else mae
            for arm, state in rolling["arms"].items():
                arms.add_metric([key, arm], {"version": state["version"], "spec": state["spec"]})
                if state["value"] is not None and view["task"] is not None:
                    family.add_metric([key, arm], state["value"])
            pending.add_metric([key], view["pending"])
            sessions.add_metric([key], view["sessions"])
            for name, shares, samples in view["experiments"]:
                for arm, share in sorted(shares.items()):
                    traffic.add_metric([key, name, arm], share)
                for arm, n in sorted(samples.items()):
                    sample.add_metric([key, name, arm], n)
        if rest:
            views = [m.key_view(model) for model in rest]
            seen.add_metric([OTHER], sum(model.events_seen for model in rest))
            pending.add_metric([OTHER], sum(v["pending"] for v in views))
            sessions.add_metric([OTHER], sum(v["sessions"] for v in views))
        yield from (seen, arms, accuracy, mae, pending, sessions, traffic, sample)
        drift = _family("stream_cd_drift_alarms_total")
        decisions = _family("stream_cd_decisions_total")
        shown = m.labeled | {OTHER}
        for label, n in sorted(m.drift_alarms.items()):
            if label in shown:
                drift.add_metric([label], n)
        for (label, action, trigger), n in sorted(m.decisions.items()):
            if label in shown:
                decisions.add_metric([label, action, trigger], n)
        yield drift
        yield decisions

    @staticmethod
    def _counter(name: str, value: float) -> CounterMetricFamily:
        family = _family(name)
        family.add_metric([], value)
        return family

    @staticmethod
    def _gauge(name: str, value: float) -> GaugeMetricFamily:
        family = _family(name)
        family.add_metric([], value)
        return family


def registry_for(metrics: WorkerMetrics, process: bool = True) -> CollectorRegistry:
    """A registry of the worker's series (and the process's own: CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(metrics))
    if process:
        from prometheus_client import PlatformCollector, ProcessCollector

        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def render(metrics: WorkerMetrics) -> bytes:
    """The text a scrape would get (the worker's series only)."""
    return generate_latest(registry_for(metrics, process=False))


def serve_metrics(metrics: WorkerMetrics, port: int, addr: str = "0.0.0.0"):
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread; return the server (``shutdown()`` stops it)."""
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry_for(metrics))
    except OSError as err:
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {err.strerror or err}") from None
    return server
