"""What the worker loop tells an observer: a few calls per batch, never one per event.

A :class:`WorkerObserver` is handed to :class:`stream_cd.worker.Worker`; every
method here is a no-op, so an observer overrides what it needs. The calls
come from the worker's own thread; an observer that is read from another
thread (a metrics scrape) keeps to values it can read without a lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from stream_cd.decisions import Decision
    from stream_cd.worker import Worker

__all__ = ["WorkerObserver"]


class WorkerObserver:
    """The worker's hooks (see the module docstring)."""

    def attach(self, worker: "Worker") -> None:
        """The worker this observer watches, once, when the worker is made."""

    def learned(self, timestamps_ms: Sequence[int], now_s: float) -> None:
        """A batch is done: the message timestamps of the labeled events and feedback it took in."""

    def dead_letter(self, reason: str) -> None:
        """A message was invalid and went to the dead-letter topic."""

    def decision(self, decision: "Decision") -> None:
        """A decision was published."""

    def committed(self, seconds: float, checkpoints: int) -> None:
        """A commit was handed to the transport after ``seconds`` (pickling and signing included)."""

    def failed(self, error: Exception) -> None:
        """The transport failed; the work since the last commit is dropped (a failed commit)."""

    def rebalanced(self, changes: Sequence[tuple[str, list[int]]]) -> None:
        """Partitions were ``assigned`` or ``revoked``, in that order."""

    def restored(self, restored: int, refused: int, seconds: float) -> None:
        """State records were restored from checkpoints (``refused`` ones failed their check)."""
