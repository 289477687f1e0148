"""A latency histogram fed a batch at a time, in plain Python.

The worker hands over the message timestamps (epoch milliseconds) of a batch's
learned events once the batch is done. Their latencies are close together
(a batch is a few milliseconds of messages), so when the oldest and the newest
fall in one bucket, which is the common case, the whole batch is counted with
one addition; otherwise each is placed with a binary search.

>>> h = LatencyHistogram(bounds_s=(0.01, 0.1, 1.0))
>>> h.observe_batch([1_000, 1_004], now_s=1.008)   # 8 ms and 4 ms
>>> h.observe_batch([1_000, 1_950], now_s=2.0)     # 1,000 ms and 50 ms
>>> h.cumulative(), h.count, round(h.sum_s, 3)
([2, 3, 4, 4], 4, 1.062)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["LatencyHistogram", "LATENCY_BUCKETS_S"]

# From a few milliseconds (a worker keeping up) to minutes (a worker catching up on a backlog).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class LatencyHistogram:
    """Counts per bucket (upper bounds ``bounds_s``, then +Inf), their sum and count."""

    def __init__(self, bounds_s: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        self._bounds_ms = [b * 1000.0 for b in self.bounds_s]
        self.counts = [0] * (len(self.bounds_s) + 1)
        self.sum_s = 0.0
        self.count = 0

    def observe_batch(self, timestamps_ms: Sequence[int], now_s: float) -> None:
        """Count the latency ``now - t`` of every timestamp (negative ones, from clocks apart, as 0)."""
        n = len(timestamps_ms)
        if not n:
            return
        now_ms = now_s * 1000.0
        bounds = self._bounds_ms
        low = bisect_left(bounds, now_ms - max(timestamps_ms))
        high = bisect_left(bounds, now_ms - min(timestamps_ms))
        if low == high:
            self.counts[low] += n
        else:
            counts = self.counts
            for t in timestamps_ms:
                counts[bisect_left(bounds, now_ms - t)] += 1
        self.sum_s += max(0.0, (n * now_ms - sum(timestamps_ms)) / 1000.0)
        self.count += n

    def observe(self, seconds: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self._bounds_ms, seconds * 1000.0)] += 1
        self.sum_s += seconds
        self.count += 1

    def cumulative(self) -> list[int]:
        """Counts of values at most each bound, the last one of all (+Inf): Prometheus' ``le`` buckets."""
        out, total = [], 0
        for c in list(self.counts):
            total += c
            out.append(total)
        return out
