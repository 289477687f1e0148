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

    def __init__(self, delta: float = 0.002) -> None:
        self.delta = delta
        self.adwin = drift.ADWIN(delta=delta)
        self.rises = 0
        self.falls = 0

    def update(self, loss: float) -> bool:
        """Feed one loss; return True when the loss has risen significantly."""
        adwin = self.adwin
        before = adwin.estimation
        adwin.update(loss)
        if not adwin.drift_detected:
            return False
        if adwin.estimation > before:
            self.rises += 1
            return True
        self.falls += 1
        return False
