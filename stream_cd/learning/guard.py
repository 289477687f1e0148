"""Poisoning guards: limits on what one source, or one odd event, may teach a model.

:class:`SourceCap` holds back an event when its source already made up
``cap`` of the last ``window`` learned events. :class:`RangeGuard` holds back
an event with a numeric feature far outside the range learned so far
(``factor`` times the range beyond either end), after a warm-up.

>>> cap = SourceCap(cap=0.5, window=10)
>>> [cap.admit("flood") for _ in range(7)]
[True, True, True, True, True, False, False]
>>> cap.admit("alice"), cap.admit(None)
(True, True)

Its counts hold only the sources seen in the window: a source whose count
falls to zero is dropped, so a stream of ever new sources (sessions, users)
keeps at most ``window`` entries.

>>> cap = SourceCap(cap=0.5, window=3)
>>> for user in ("u1", "u2", "u3", "u4", "u5"):
...     _ = cap.admit(user)
>>> sorted(cap.counts)
['u3', 'u4', 'u5']
>>> guard = RangeGuard(factor=1.0, warmup=3)
>>> [guard.admit({"a": v}) for v in (0.0, 10.0, 5.0, 25.0, 19.0)]
[True, True, True, False, True]
"""

from __future__ import annotations

from collections import Counter, deque

from stream_cd.errors import ConfigError

__all__ = ["SourceCap", "RangeGuard"]


class SourceCap:
    """At most ``cap`` (a fraction) of the last ``window`` learned events from any one source.

    ``counts`` holds the sources of the window only (never a zero count), so its size,
    and the checkpoint's, is bounded by ``window``.
    """

    def __init__(self, cap: float, window: int = 1000) -> None:
        if not 0 < cap <= 1:
            raise ConfigError(f"source cap {cap} must be a fraction in (0, 1]")
        if window < 1:
            raise ConfigError(f"source window {window} must be at least 1 event")
        self.cap = cap
        self.window = window
        self.limit = cap * window
        self.recent: deque[str | None] = deque()
        self.counts: Counter[str | None] = Counter()

    def admit(self, source: str | None) -> bool:
        """Whether an event of ``source`` may be learned; if so it is counted in the window."""
        if source is not None and self.counts[source] >= self.limit:
            return False
        recent = self.recent
        counts = self.counts
        if len(recent) == self.window:
            oldest = recent.popleft()
            left = counts[oldest] - 1
            if left:
                counts[oldest] = left
            else:
                del counts[oldest]
        recent.append(source)
        counts[source] += 1
        if len(counts) > self.window:  # zero counts kept by a checkpoint of an older version
            self.counts = Counter({name: n for name, n in counts.items() if n > 0})
        return True


class RangeGuard:
    """Hold back events whose numeric features lie far outside the range learned so far."""

    def __init__(self, factor: float, warmup: int = 100) -> None:
        if factor <= 0:
            raise ConfigError(f"range guard factor {factor} must be positive")
        self.factor = factor
        self.warmup = warmup
        self.seen = 0
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def admit(self, x: dict) -> bool:
        """Whether ``x`` lies within the guarded range; if so its values widen the range."""
        low, high = self.low, self.high
        if self.seen >= self.warmup:
            for name, value in x.items():
                if type(value) is bool or type(value) is str or name not in low:
                    continue
                margin = self.factor * (high[name] - low[name])
                if value < low[name] - margin or value > high[name] + margin:
                    return False
        for name, value in x.items():
            if type(value) is bool or type(value) is str:
                continue
            if name in low:
                if value < low[name]:
                    low[name] = value
                elif value > high[name]:
                    high[name] = value
            else:
                low[name] = high[name] = value
        self.seen += 1
        return True
