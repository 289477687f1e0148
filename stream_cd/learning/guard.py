"""Poisoning guards: limits on what one source, or one odd event, may teach a model.

:class:`SourceCap` holds back an event when its source already made up
``cap`` of the last ``window`` learned events. :class:`RangeGuard` holds back
an event with a numeric feature far outside the range learned so far
(``factor`` times the range beyond either end), once that feature has had a
warm-up of its own and has shown a range at all.

>>> cap = SourceCap(cap=0.5, window=10)
>>> [cap.admit("flood") for _ in range(7)]
[True, True, True, True, True, False, False]
>>> cap.admit("alice"), cap.admit(None)
(True, True)

A source at its cap is let in again as its own events leave the window: two
sources taking turns under a cap of one half are both learned. With fewer
sources than ``1 / cap`` and nothing else, learning pauses until others come.

>>> cap = SourceCap(cap=0.5, window=10)
>>> sum(cap.admit(source) for _ in range(500) for source in ("a", "b"))
1000

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
>>> [guard.admit({"a": 5.0, "late": v}) for v in (5.0, 6.0, 4.9, 100.0, 6.5)]  # "late" warms up on its own
[True, True, True, False, True]
>>> [guard.admit({"flag": v}) for v in (0.0, 0.0, 0.0, 1.0, 1.0)]  # a feature that had not varied is not held
[True, True, True, True, True]
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
        """Whether an event of ``source`` may be learned (the source's share of the window
        with it, its oldest event gone if the window is full, within the cap); if so it is
        counted in the window."""
        recent = self.recent
        counts = self.counts
        full = len(recent) == self.window
        if source is not None and counts[source] + 1 - (full and recent[0] == source) > self.limit:
            return False
        if full:
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
        self._counts: dict[str, int] = {}  # learned events with each feature

    def admit(self, x: dict) -> bool:
        """Whether ``x`` lies within the guarded range; if so its values widen the range."""
        if not self.fits(x):
            return False
        self.record(x)
        return True

    def fits(self, x: dict) -> bool:
        """Whether ``x`` lies within the guarded range (changing nothing). A feature is guarded
        once it has been learned ``warmup`` times and has shown a range (a flag that was
        always 0 so far, say, is not held for its first 1)."""
        low, high, counts, warmup = self.low, self.high, self.counts, self.warmup
        for name, value in x.items():
            if type(value) is bool or type(value) is str or counts.get(name, 0) < warmup:
                continue
            width = high[name] - low[name]
            if width > 0 and (value < low[name] - self.factor * width or value > high[name] + self.factor * width):
                return False
        return True

    def record(self, x: dict) -> None:
        """Widen the range with the values of ``x``, an event that is learned."""
        low, high, counts = self.low, self.high, self.counts
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
            counts[name] = counts.get(name, 0) + 1
        self.seen += 1

    @property
    def counts(self) -> dict[str, int]:
        """How many learned events had each feature (a guard pickled before: each at ``seen``)."""
        counts = getattr(self, "_counts", None)  # (not __dict__: asking for it would move the attributes there)
        if counts is None:
            counts = self._counts = dict.fromkeys(self.low, self.seen)
        return counts
