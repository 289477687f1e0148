"""Outputs written once the commit that covers them has landed.

A worker's local outputs (the lines of a ``--predictions`` file, the decisions
it prints) belong to the events that led to them. Written as those events are
processed, they would be written again after every rollback, when the events
since the last commit are processed again. :class:`CommittedOutputs` holds
them instead: what is produced between two commits forms one batch; the batch
is sealed when its commit is handed to the transport, written when the
transport reports that commit landed (:meth:`Transport.landed
<stream_cd.transport.Transport.landed>`, a running count), and dropped when the
worker rolls back.

>>> printed = []
>>> outputs = CommittedOutputs()
>>> show = outputs.wrap(printed.append)
>>> show("decision 1"); show("decision 2")
>>> outputs.handed_over()        # the commit of both goes to the transport ...
>>> show("decision 3")           # ... and the worker goes on
>>> printed
[]
>>> outputs.landed(1)            # the transport: one commit has landed
>>> printed
['decision 1', 'decision 2']
>>> outputs.drop(1)              # a rollback: decision 3 is made again, after it
>>> show("decision 3"); outputs.handed_over(); outputs.landed(2)
>>> printed
['decision 1', 'decision 2', 'decision 3']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CommittedOutputs"]

T = TypeVar("T")


class CommittedOutputs:
    """Local outputs held per commit, written when it lands, dropped on a rollback."""

    def __init__(self, after_write: Callable[[], None] | None = None) -> None:
        """``after_write`` runs after each landed batch that wrote something (a file's flush)."""
        self.after_write = after_write
        self._open: list[tuple[Callable[[Any], Any], Any]] = []  # since the last commit handed over
        self._sealed: deque[list[tuple[Callable[[Any], Any], Any]]] = deque()  # handed over, not landed yet
        self._landed = 0  # the transport's count of landed commits, as last reported

    def wrap(self, write: Callable[[T], Any]) -> Callable[[T], None]:
        """A callback that holds each item for ``write`` until its commit lands."""

        def hold(item: T) -> None:
            self._open.append((write, item))

        return hold

    def handed_over(self) -> None:
        """A commit has been handed to the transport: what was held so far belongs to it."""
        self._sealed.append(self._open)
        self._open = []

    def landed(self, count: int) -> None:
        """The transport reports ``count`` commits landed in all: write the batches of those
        that landed since the last report, oldest first."""
        wrote = False
        while self._landed < count and self._sealed:
            self._landed += 1
            batch = self._sealed.popleft()
            for write, item in batch:
                write(item)
            wrote = wrote or bool(batch)
        self._landed = max(self._landed, count)
        if wrote and self.after_write is not None:
            self.after_write()

    def drop(self, count: int) -> None:
        """A rollback, once nothing is in flight: write what landed (``count`` in all), drop
        the rest; the events it came from are processed again."""
        self.landed(count)
        self._sealed.clear()
        self._open = []

    def pending(self) -> int:
        """How many outputs are held (not written yet).

        >>> outputs = CommittedOutputs()
        >>> outputs.wrap(print)("a line"); outputs.pending()
        1
        """
        return len(self._open) + sum(len(batch) for batch in self._sealed)
