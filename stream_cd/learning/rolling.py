"""A rolling mean of one arm's losses: the metric a dashboard or a report plots.

The mean over about the last ``window`` scored events, at the cost of two
additions an event: losses add up in blocks of ``window``; the mean reads the
current block and, for the rest of the window, the mean of the block before
it. It is exact while the loss is steady within a block, and it moves as soon
as the loss does (a plain block mean would lag by up to a block).

>>> rolling = RollingLoss(window=4)
>>> rolling.mean is None
True
>>> for loss in (1.0, 1.0, 0.0, 0.0):
...     rolling.update(loss)
>>> rolling.mean, rolling.scored
(0.5, 4)
>>> rolling.update(1.0)   # the newest loss, and three quarters of the block before it
>>> rolling.mean, rolling.scored
(0.625, 5)
"""

from __future__ import annotations

__all__ = ["RollingLoss", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 1000


class RollingLoss:
    """Mean loss over about the last ``window`` scored events (see the module docstring)."""

    __slots__ = ("window", "total", "n", "previous", "blocks")

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"rolling window {window} must be at least 1 event")
        self.window = window
        self.total = 0.0  # losses of the current block
        self.n = 0  # events in the current block
        self.previous: float | None = None  # mean loss of the last full block
        self.blocks = 0

    def update(self, loss: float) -> None:
        self.total += loss
        self.n += 1
        if self.n == self.window:
            self.previous = self.total / self.window
            self.total = 0.0
            self.n = 0
            self.blocks += 1

    @property
    def mean(self) -> float | None:
        """The rolling mean loss; None before the first scored event."""
        if self.previous is None:
            return self.total / self.n if self.n else None
        return (self.previous * (self.window - self.n) + self.total) / self.window

    @property
    def scored(self) -> int:
        """Events scored since the arm was born."""
        return self.blocks * self.window + self.n
