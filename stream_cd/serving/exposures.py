"""Exposures: what each arm output for a request, held until its feedback comes.

In production the label comes after the prediction: a click, a purchase, a
fraud report. When a request is served, every arm that scored it leaves its
output here with the request's features; the feedback (the same ``id`` and a
``y``) takes the exposure back out, and each arm is then scored on the output
it gave *at request time*, never on a model that has learned since.

Exposures are bounded in number (``max_pending``: the oldest expires first)
and in event-time age (``ttl_ms``, measured against the newest event time the
store has seen, so a key whose feedback stops still expires its requests as
new requests come). What expires is counted; a caller that wants the online
joiners' convention (no click within the window is a negative) learns the
expired exposures with a default label. The last ``CLOSED_MEMORY`` ids that
were answered or expired are remembered, so late or repeated feedback is
rejected with the right reason (an older one is "no such request"); the
memory is bounded apart from ``max_pending`` because it goes into every
checkpoint of the key.

>>> store = ExposureStore(max_pending=2, ttl_ms=1_000)
>>> store.add("r1", Exposure({"f": 1.0}, 0, (("champion", True),), True))
[]
>>> store.take("r1", ts=10).outputs
(('champion', True),)
>>> store.take("r1", ts=20)
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: feedback for request 'r1' came again: that request already had its feedback
>>> _ = store.add("r2", Exposure({"f": 2.0}, 100, (), None))
>>> [e.ts for e in store.add("r3", Exposure({"f": 3.0}, 1_500, (), None))]   # r2 is 1,400 ms old
[100]
>>> store.take("r2", ts=1_600)
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: feedback for request 'r2' came after its request expired (older than the feedback TTL of 1 s, or more than 2 requests waiting)
>>> store.take("nope", ts=1_600)
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: feedback for request 'nope': no such request is waiting for feedback (never served here, or its id is wrong)
>>> store.stats()
{'pending': 1, 'joined': 1, 'expired': 1, 'rejected': 3}
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from stream_cd.errors import InvalidEvent

__all__ = ["Exposure", "ExposureStore", "served_record", "DEFAULT_MAX_PENDING", "NO_OUTPUT"]

DEFAULT_MAX_PENDING = 100_000
NO_OUTPUT = object()  # an arm gave no output for a request (it did not score it)
CLOSED_MEMORY = 10_000
_ANSWERED, _EXPIRED = "answered", "expired"


class Exposure:
    """One request as it was served: its features and time, each scoring arm's
    output (``outputs``: ``(arm, output)`` pairs, the serving arm first), and what
    the user saw (``served``: the prediction, adapted to the session if it had one).

    ``session``, ``raw`` and ``adapted`` are set when the prediction was adapted to a
    session: the session, the serving arm's own prediction (its probabilities, for
    classification), which the session's adapter learns from at feedback time, and
    ``(adapted prediction, feedback the session had shown)`` as served. ``routed`` is
    ``(experiment, arm, epoch)`` when an experiment chose the serving arm.
    """

    __slots__ = ("x", "ts", "outputs", "served", "session", "raw", "adapted", "source", "routed")

    def __init__(self, x: dict, ts: int, outputs: tuple, served: Any, session: str | None = None,
                 raw: Any = None, adapted: tuple | None = None, source: str | None = None) -> None:
        self.x = x
        self.ts = ts
        self.outputs = outputs
        self.served = served
        self.session = session
        self.raw = raw
        self.adapted = adapted
        self.source = source
        # (experiment, arm, epoch) when an experiment routed it; epoch None: scored in no test
        self.routed: tuple[str, str, int | None] | None = None


class ExposureStore:
    """Pending exposures of one model key, by request id, oldest first."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING, ttl_ms: int | None = None) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending {max_pending} must be at least 1")
        self.max_pending = max_pending
        self.ttl_ms = ttl_ms
        self.pending: OrderedDict[str, Exposure] = OrderedDict()
        self.closed: OrderedDict[str, str] = OrderedDict()  # id -> answered | expired, bounded
        self.clock = 0  # the newest event time seen
        self.joined = 0
        self.expired = 0
        self.rejected = 0

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, ident: str) -> bool:
        return ident in self.pending

    def check_new(self, ident: str) -> None:
        """Reject a request whose id is already waiting for its feedback."""
        if ident in self.pending:
            self.rejected += 1
            raise InvalidEvent(f"request id {ident!r} is already waiting for its feedback; request ids must be unique")

    def add(self, ident: str, exposure: Exposure) -> list[Exposure]:
        """Hold ``exposure`` until the feedback for ``ident``; return what expired to make room
        or by age, oldest first. A request whose id is already waiting is rejected."""
        self.check_new(ident)
        expired = self._advance(exposure.ts)
        self.pending[ident] = exposure
        self.closed.pop(ident, None)  # an id reused after its first request was closed
        if len(self.pending) > self.max_pending:
            expired.append(self._expire_oldest())
        return expired

    def waiting(self, ident: str, ts: int) -> Exposure:
        """The exposure of the request ``ident``, for its feedback at ``ts``, left waiting;
        :class:`InvalidEvent` with the reason when there is none, or when the feedback
        comes later than the TTL after its request (whatever came in between)."""
        exposure = self.pending.get(ident)
        if exposure is None:
            self.rejected += 1
            raise InvalidEvent(self._why_not(ident))
        if self.ttl_ms is not None and ts - exposure.ts > self.ttl_ms:
            self.rejected += 1  # it expires with the clock, as if the feedback had never come
            raise InvalidEvent(f"feedback for request {ident!r} came {(ts - exposure.ts) / 1000:g} s after its "
                               f"request, later than the feedback TTL of {self.ttl_ms / 1000:g} s")
        return exposure

    def take(self, ident: str, ts: int) -> Exposure:
        """The exposure of the request ``ident``, for its feedback at ``ts``, answered
        (:class:`InvalidEvent` as :meth:`waiting` says)."""
        exposure = self.waiting(ident, ts)
        del self.pending[ident]
        self._close(ident, _ANSWERED)
        self.joined += 1
        return exposure

    def expire_due(self, ts: int) -> list[Exposure]:
        """Move the clock to ``ts`` and return the exposures that expired by age."""
        return self._advance(ts)

    def _advance(self, ts: int) -> list[Exposure]:
        if ts > self.clock:
            self.clock = ts
        ttl = self.ttl_ms
        if ttl is None or not self.pending:
            return []
        horizon = self.clock - ttl
        expired = []
        pending = self.pending
        while pending and next(iter(pending.values())).ts < horizon:
            expired.append(self._expire_oldest())
        return expired

    def _expire_oldest(self) -> Exposure:
        ident, exposure = self.pending.popitem(last=False)
        self._close(ident, _EXPIRED)
        self.expired += 1
        return exposure

    def _close(self, ident: str, how: str) -> None:
        closed = self.closed
        closed[ident] = how
        if len(closed) > CLOSED_MEMORY:
            closed.popitem(last=False)

    def _why_not(self, ident: str) -> str:
        how = self.closed.get(ident)
        if how == _ANSWERED:
            return f"feedback for request {ident!r} came again: that request already had its feedback"
        if how == _EXPIRED:
            why = f"more than {self.max_pending} requests waiting"
            if self.ttl_ms is not None:
                why = f"older than the feedback TTL of {self.ttl_ms / 1000:g} s, or {why}"
            return f"feedback for request {ident!r} came after its request expired ({why})"
        return f"feedback for request {ident!r}: no such request is waiting for feedback (never served here, or its id is wrong)"

    def stats(self) -> dict[str, int]:
        return {"pending": len(self.pending), "joined": self.joined, "expired": self.expired, "rejected": self.rejected}


def served_record(model_key: str, exposure: Exposure, ident: str | None, ts: int) -> dict[str, Any]:
    """What was served for a request, as one message of the predictions topic: ``id``,
    ``model_key``, the serving ``arm`` and its ``version``, ``experiment`` (None for the
    shadow), ``prediction`` and ``ts``; for a prediction adapted to a session also the
    ``session``, ``p`` (the served probability of the served class) and ``p_global`` (the
    arm's own), and ``session_events`` (the feedback the session had shown).

    >>> class Arm: name, label = "champion", "v1.0"
    >>> served_record("shop", Exposure({"f": 1.0}, 7, ((Arm, True),), True), "r1", 7)
    {'id': 'r1', 'model_key': 'shop', 'arm': 'champion', 'version': 'v1.0', 'experiment': None, 'prediction': True, 'ts': 7}
    """
    arm = exposure.outputs[0][0]
    routed = exposure.routed
    record: dict[str, Any] = {"id": ident, "model_key": model_key, "arm": arm.name if routed is None else routed[1],
                              "version": arm.label, "experiment": None if routed is None else routed[0],
                              "prediction": exposure.served, "ts": ts}
    if exposure.adapted is not None:
        value, n = exposure.adapted
        record["session"] = exposure.session
        if isinstance(value, dict):
            record.update(p=value.get(exposure.served), p_global=exposure.raw.get(exposure.served))
        else:
            record["p_global"] = exposure.raw
        record["session_events"] = n
    return record
