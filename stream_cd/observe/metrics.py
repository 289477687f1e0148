"""The worker's metrics in plain Python, fed by its hooks and read when scraped.

Counters that only the hooks know (dead letters by reason class, decisions by
model key and action, commits, rebalances, restores, the latency of learned
events) are kept here; everything the pipeline already holds (consumed
messages, each model key's versions, rolling metrics, pending exposures,
sessions, the shadow experiment's pairs) is read from it at scrape time, so a
worker pays nothing per event for it.

Bounded labels: a model key is a label value, and each exposed key brings up to
about 20 series (its arms' info and rolling metrics, pending exposures,
sessions, the experiment's traffic and sample per arm, decisions by action).
Prometheus is comfortable with some 10,000 series per target, so a worker can
expose about 500 keys before its labels must be capped; ``max_keys`` (100 by
default) caps them: the keys with the most events seen get their own label,
every other key is summed into ``model_key="__other__"``. A decision is
counted under the label its key had when it was made, so no counter ever goes
down.

>>> from stream_cd.pipeline import Pipeline
>>> from stream_cd.config import PipelineConfig
>>> from stream_cd.decisions import Decision
>>> m = WorkerMetrics(max_keys=1)
>>> m.decision(Decision("a", "checkpoint", "volume", "v1.1", None, 10))
>>> m.decision(Decision("b", "checkpoint", "volume", "v1.1", None, 10))
>>> m.dead_letter("not valid JSON: oops")
>>> sorted(m.decisions.items()), dict(m.invalid)
([(('__other__', 'checkpoint', 'volume'), 1), (('a', 'checkpoint', 'volume'), 1)], {'not_json': 1})
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from stream_cd.observe.hooks import WorkerObserver
from stream_cd.observe.latency import LatencyHistogram
from stream_cd.observe.reasons import reason_class

if TYPE_CHECKING:  # pragma: no cover
    from stream_cd.decisions import Decision
    from stream_cd.model_key import ModelKey
    from stream_cd.worker import Worker

__all__ = ["WorkerMetrics", "OTHER", "DEFAULT_MAX_KEYS", "LagSource"]

OTHER = "__other__"
DEFAULT_MAX_KEYS = 100
# partitions -> {partition: (end offset, committed offset or None)}; None when it cannot tell now
LagSource = Callable[[Sequence[int]], "dict[int, tuple[int, int | None]] | None"]


class WorkerMetrics(WorkerObserver):
    """Counts of one worker (see the module docstring)."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS, lag_source: LagSource | None = None,
                 info: dict[str, str] | None = None) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys {max_keys} must be at least 1")
        self.max_keys = max_keys
        self.lag_source = lag_source
        self.info = dict(info or {})
        self.worker: Worker | None = None
        self.latency = LatencyHistogram()
        self.commit_seconds = LatencyHistogram((0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
        self.invalid: Counter[str] = Counter()
        self.decisions: Counter[tuple[str, str, str]] = Counter()  # (label, action, trigger)
        self.drift_alarms: Counter[str] = Counter()
        self.commit_failures = 0
        self.rebalances = 0
        self.restores = 0
        self.restored_records = 0
        self.refused_records = 0
        self.held: set[int] = set()  # partitions held, as the rebalances told
        self.labeled: frozenset[str] = frozenset()  # keys with a label of their own
        self.started = time.time()

    # -- the hooks ------------------------------------------------------------------

    def attach(self, worker: "Worker") -> None:
        self.worker = worker

    def learned(self, timestamps_ms: Sequence[int], now_s: float) -> None:
        self.latency.observe_batch(timestamps_ms, now_s)

    def dead_letter(self, reason: str) -> None:
        self.invalid[reason_class(reason)] += 1

    def decision(self, decision: "Decision") -> None:
        label = self.label(decision.model_key)
        self.decisions[label, decision.action, decision.trigger] += 1
        if decision.trigger == "drift":
            self.drift_alarms[label] += 1

    def committed(self, seconds: float, checkpoints: int) -> None:
        self.commit_seconds.observe(seconds)

    def failed(self, error: Exception) -> None:
        self.commit_failures += 1
        self.held = set()  # the transport starts over; the partitions are announced again

    def rebalanced(self, changes: Sequence[tuple[str, list[int]]]) -> None:
        self.rebalances += 1
        held = set(self.held)
        for kind, partitions in changes:
            if kind == "assigned":
                held.update(partitions)
            else:
                held.difference_update(partitions)
        self.held = held

    def restored(self, restored: int, refused: int, seconds: float) -> None:
        self.restores += 1
        self.restored_records += restored
        self.refused_records += refused

    # -- labels ---------------------------------------------------------------------

    def label(self, key: str) -> str:
        """The label value of a model key now: itself, or ``__other__`` once the cap is reached."""
        labeled = self.labeled
        if key in labeled:
            return key
        if len(labeled) < self.max_keys:
            self.labeled = labeled | {key}
            return key
        return OTHER

    def select(self, models: Iterable[tuple[str, "ModelKey"]]) -> tuple[list[tuple[str, "ModelKey"]], list["ModelKey"]]:
        """Split the held model keys into those with a label of their own (the ``max_keys``
        with most events seen) and the rest; remember the choice for the decisions to come."""
        models = list(models)
        if len(models) <= self.max_keys:
            top = models
        else:
            top = heapq.nlargest(self.max_keys, models, key=lambda item: (item[1].events_seen, item[0]))
        self.labeled = frozenset(key for key, _ in top)
        rest = [model for key, model in models if key not in self.labeled] if len(top) < len(models) else []
        return sorted(top, key=lambda item: item[0]), rest

    # -- reading the worker ----------------------------------------------------------

    def models(self) -> list[tuple[str, "ModelKey"]]:
        """The model keys the worker holds now (a copy: the worker goes on meanwhile)."""
        return [] if self.worker is None else list(self.worker.pipeline.models.items())

    def consumed(self) -> int:
        return 0 if self.worker is None else self.worker.stats.consumed

    def lag(self) -> dict[int, int]:
        """Messages behind the end of each held partition; empty without a lag source."""
        if self.lag_source is None or self.worker is None or not self.held:
            return {}
        held = sorted(self.held)
        ends = self.lag_source(held)
        if ends is None:
            return {}
        positions = self.worker.pipeline.partitions
        lag = {}
        for p in held:
            if p not in ends:
                continue
            end, committed = ends[p]
            state = positions.get(p)
            position = state.next_offset if state is not None and state.next_offset else (committed or 0)
            lag[p] = max(0, end - position)
        return lag

    def key_view(self, model: "ModelKey") -> dict[str, Any]:
        """What the series of one model key show, read from it without changing it."""
        sessions = model.sessions
        return {
            "rolling": model.rolling(),
            "pending": len(model.exposures.pending),
            "sessions": 0 if sessions is None else sessions.stats()["sessions"],
            "experiments": _experiments(model),
            "task": model.task,
        }


def _experiments(model: "ModelKey") -> list[tuple[str, dict[str, float], dict[str, int]]]:
    """``(name, traffic share per arm, sample per arm)`` of each experiment running on the key:
    the shadow test (the champion serves all, both arms score every pair) and an A/B/n test
    or canary (each arm's share of units, and the requests it served)."""
    found = []
    shadow = None if model.policy is None else model.policy.experiment
    if shadow is not None and model.challenger is not None:
        found.append(("shadow", {"champion": 1.0, "challenger": 0.0}, {"champion": shadow.pairs, "challenger": shadow.pairs}))
    running = getattr(model, "running", None)
    if running is not None:
        status = running.test.status()
        sample = {arm: int(state.get("requests", state.get("n", 0)) or 0) for arm, state in status["arms"].items()}
        found.append((running.name, dict(running.test.traffic()), sample))
    return found
