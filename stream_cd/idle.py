"""When a worker run with ``--idle-exit`` may stop: nothing new for a while, and nothing left to read.

The idle clock runs only while the worker holds partitions that are being read:
waiting for the group to assign partitions (after a restart, until the crashed
member times out), for a fetch process to start, or for a broker to come back is
not idleness, and neither is a rebalance. When the idle period has passed, the
worker asks how far its partitions are behind their ends. Nothing behind: it
stops. Something behind, or no answer (the broker does not say): the reading is
stuck rather than done (the fetch process starts a new consumer when it is), so
it waits another period, up to :data:`MAX_IDLE_STALLS` times, and then stops
anyway, saying so (the partitions' next owner reads on from the last commit).

>>> now = [0.0]
>>> idle = IdleExit(5.0, clock=lambda: now[0])
>>> idle.quiet(waiting=False), now.__setitem__(0, 5.0), idle.quiet(waiting=False)
(False, None, True)
>>> idle.stop_reason({})
'idle'
>>> idle.stop_reason({3: 120}) is None, idle.quiet(waiting=False)  # behind: another period
(True, False)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["IdleExit", "MAX_IDLE_STALLS"]

log = logging.getLogger("stream_cd.worker")

# An idle exit waits this many more idle periods, at most, while its partitions are behind
# their ends (the reading is stuck, and the fetch process is starting a new consumer).
MAX_IDLE_STALLS = 3


class IdleExit:
    """The idle clock of one run: ``seconds`` with nothing new (None: never stop on idle)."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] | None = None) -> None:
        self.seconds = seconds
        self._clock = clock
        self.since: float | None = None  # when the current idle period began
        self.stalls = 0  # idle periods in a row that ended with partitions still behind

    def _now(self) -> float:
        return time.monotonic() if self._clock is None else self._clock()

    def busy(self) -> None:
        """A batch came: the next idle period starts from now."""
        self.since = self._now()
        self.stalls = 0

    def restart(self) -> None:
        """A rebalance, or a recovery from a failed transport: not idleness."""
        self.since = None
        self.stalls = 0

    def quiet(self, waiting: bool) -> bool:
        """A poll brought nothing; whether the idle period has passed. ``waiting``: no
        partition is held yet, or its fetching has not started (not idleness)."""
        if waiting:
            self.since = None
            return False
        if self.since is None:
            self.since = self._now()
        return self.seconds is not None and self._now() - self.since >= self.seconds

    def stop_reason(self, behind: dict[int, int] | None) -> str | None:
        """Why the worker may stop, given how far each held partition is behind (None:
        unknown), or None when it must wait another idle period."""
        if behind == {}:
            return "idle"
        self.stalls += 1
        what = "it cannot be told how far the partitions are behind" if behind is None else \
            f"partitions are behind their ends ({lag_text(behind)})"
        fields = {"behind": behind, "idle_s": self.seconds, "stalls": self.stalls}
        if self.stalls > MAX_IDLE_STALLS:
            log.error("nothing read for %d idle periods of %.0f s, and %s; stopping anyway: the partitions' next owner "
                      "reads on from the last commit", MAX_IDLE_STALLS + 1, self.seconds, what,
                      extra={"event": "idle_stalled", "fields": fields})
            return "idle, reading stalled"
        log.warning("nothing read for %.0f s, but %s: not idle; waiting another %.0f s", self.seconds, what,
                    self.seconds, extra={"event": "idle_stalled", "fields": fields})
        self.since = self._now()
        return None


def lag_text(behind: dict[int, int]) -> str:
    """How far partitions are behind, in words.

    >>> lag_text({3: 1200, 0: 5})
    'partition 0: 5 messages, partition 3: 1,200 messages'
    """
    return ", ".join(f"partition {p}: {n:,} messages" for p, n in sorted(behind.items()))
