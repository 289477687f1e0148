"""Update triggers: when to start a stateless retrain besides drift.

Each trigger watches the labeled events of one model key through
``observe(ts_ms, events_seen, loss)`` and returns True when it fires. A firing
starts a fresh challenger and is published as a ``retrain`` decision whose
``trigger`` is the trigger's ``name``.

>>> t = VolumeTrigger(every=1000)
>>> [n for n in range(1, 3001) if t.observe(0, n, 0.0)]
[1000, 2000, 3000]
>>> g = VolumeTrigger(growth_pct=50, start=1000)
>>> [n for n in range(1, 3001) if g.observe(0, n, 0.0)]
[1500, 2250]
>>> clock = TimeTrigger(every_s=60)
>>> [s for s in range(0, 200, 10) if clock.observe(s * 1000, s, 0.0)]
[60, 120, 180]
>>> clock.observe(10**14, 0, 0.0), clock.next_ms > 10**14, clock.observe(10**14 + 1000, 0, 0.0)  # a jump: fires once
(True, True, False)
>>> perf = PerformanceTrigger(threshold=0.8, window=10)
>>> [i for i in range(40) if perf.observe(0, i, 0.0 if i < 20 else 1.0)]
[22, 32]
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stream_cd.errors import ConfigError

__all__ = ["Trigger", "TimeTrigger", "PerformanceTrigger", "VolumeTrigger", "TriggerSettings", "build_triggers"]


class Trigger:
    """Base class: a named condition over the stream of labeled events."""

    name = "trigger"

    def observe(self, ts_ms: int, events_seen: int, loss: float) -> bool:
        raise NotImplementedError


class TimeTrigger(Trigger):
    """Fires every ``every_s`` seconds of event time."""

    name = "time"

    def __init__(self, every_s: float) -> None:
        if every_s <= 0:
            raise ConfigError(f"time trigger every {every_s} s: the period must be positive")
        self.every_ms = every_s * 1000
        self.next_ms: float | None = None

    def observe(self, ts_ms: int, events_seen: int, loss: float) -> bool:
        if self.next_ms is None:
            self.next_ms = ts_ms + self.every_ms
            return False
        if ts_ms < self.next_ms:
            return False
        self.next_ms += self.every_ms  # the next period; past several at once when time jumped ahead
        if self.next_ms <= ts_ms:
            self.next_ms += self.every_ms * (math.floor((ts_ms - self.next_ms) / self.every_ms) + 1)
        return True


class PerformanceTrigger(Trigger):
    """Fires when the rolling metric over ``window`` events crosses a threshold.

    For classification the metric is accuracy (1 - mean 0/1 loss) and fires
    below ``threshold``; for regression it is the mean absolute error and fires
    above it. After a firing it waits for a full new window.
    """

    name = "performance"

    def __init__(self, threshold: float, window: int = 1000, higher_is_better: bool = True) -> None:
        if window < 1:
            raise ConfigError(f"performance trigger window {window}: it must be at least 1 event")
        self.threshold = threshold
        self.window = window
        self.higher_is_better = higher_is_better
        self.losses: deque[float] = deque(maxlen=window)
        self.total = 0.0

    def observe(self, ts_ms: int, events_seen: int, loss: float) -> bool:
        losses = self.losses
        if len(losses) == self.window:
            self.total -= losses[0]
        losses.append(loss)
        self.total += loss
        if len(losses) < self.window:
            return False
        mean_loss = self.total / self.window
        fired = (1.0 - mean_loss < self.threshold) if self.higher_is_better else (mean_loss > self.threshold)
        if fired:
            losses.clear()
            self.total = 0.0
        return fired


class VolumeTrigger(Trigger):
    """Fires every ``every`` labeled events, or when they have grown by ``growth_pct`` percent."""

    name = "volume"

    def __init__(self, every: int | None = None, growth_pct: float | None = None, start: int = 0) -> None:
        if (every is None) == (growth_pct is None):
            raise ConfigError("volume trigger: give exactly one of every (events) or growth_pct (percent)")
        if every is not None and every < 1:
            raise ConfigError(f"volume trigger every {every} events: it must be at least 1")
        if growth_pct is not None and growth_pct <= 0:
            raise ConfigError(f"volume trigger growth {growth_pct}%: it must be positive")
        self.every = every
        self.growth_pct = growth_pct
        self.base = start

    def observe(self, ts_ms: int, events_seen: int, loss: float) -> bool:
        if self.every is not None:
            due = events_seen - self.base >= self.every
        else:
            due = self.base > 0 and events_seen >= self.base * (1 + self.growth_pct / 100)  # type: ignore[operator]
            if self.base == 0 and events_seen > 0:
                self.base = events_seen
        if due:
            self.base = events_seen
        return due


@dataclass(frozen=True)
class TriggerSettings:
    """Which triggers run; None turns one off."""

    every_s: float | None = None
    performance_below: float | None = None
    performance_window: int = 1000
    volume_every: int | None = None
    volume_growth_pct: float | None = None


def build_triggers(settings: TriggerSettings, task: str) -> list[Trigger]:
    """Fresh triggers for one model key."""
    triggers: list[Trigger] = []
    if settings.every_s is not None:
        triggers.append(TimeTrigger(settings.every_s))
    if settings.performance_below is not None:
        triggers.append(
            PerformanceTrigger(
                settings.performance_below,
                settings.performance_window,
                higher_is_better=(task == "classification"),
            )
        )
    if settings.volume_every is not None or settings.volume_growth_pct is not None:
        triggers.append(VolumeTrigger(settings.volume_every, settings.volume_growth_pct))
    return triggers


