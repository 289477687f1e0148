"""Drift detection on a model's per-event loss, where only a rise is drift.

River's ADWIN raises an alarm whenever the mean of its window changes, which
includes the loss *falling* as a model improves. Retraining on those alarms
throws away good models, so :class:`RisingLossDetector` reports drift only when
the recent part of the window (what ADWIN keeps after the cut) has a higher
mean loss than the whole window had before it.

>>> import random
>>> rng = random.Random(7)
>>> detector = RisingLossDetector()
>>> losses = [float(rng.random() < 0.1) for _ in range(3000)] + [float(rng.random() < 0.5) for _ in range(3000)]
>>> [i for i, loss in enumerate(losses) if detector.update(loss)][:1]
[3071]
>>> improving = RisingLossDetector()
>>> falling = [float(rng.random() < 0.5) for _ in range(3000)] + [float(rng.random() < 0.1) for _ in range(3000)]
>>> any(improving.update(loss) for loss in falling), improving.falls > 0
(False, True)
"""

from __future__ import annotations

from river import drift

__all__ = ["RisingLossDetector"]


class RisingLossDetector:
    """ADWIN on a loss stream that reports rises only.

    Parameters
    ----------
    delta
        ADWIN's confidence; smaller means fewer, later alarms.
    """

    _sum = 0.0
    _n: int | None = None  # None: not mirrored yet (a detector pickled before), ask ADWIN

    def __init__(self, delta: float = 0.002) -> None:
        self.delta = delta
        self.adwin = drift.ADWIN(delta=delta)
        self.rises = 0
        self.falls = 0
        self._sum = 0.0  # sum and count of ADWIN's window: it only ever drops elements when it
        self._n: int | None = 0  # detects a change, and then starts afresh on the next update

    def update(self, loss: float) -> bool:
        """Feed one loss; return True when the loss has risen significantly."""
        adwin = self.adwin
        if adwin.drift_detected:
            self._sum, self._n = 0.0, 0
        n = self._n
        before = adwin.estimation if n is None else (self._sum / n if n else 0.0)
        adwin.update(loss)
        if n is not None:
            self._sum += loss
            self._n = n + 1
        if not adwin.drift_detected:
            return False
        if adwin.estimation > before:
            self.rises += 1
            return True
        self.falls += 1
        return False
