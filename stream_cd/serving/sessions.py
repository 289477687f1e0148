"""Cold-start session adaptation: a session's own feedback adapts the global model's predictions.

A new session (a user with no history, or one idle longer than the TTL) is
served the global champion's prediction as is; as its labelled events arrive,
its adapter (:mod:`stream_cd.serving.session_adapters`: :class:`LogitResidual`,
:class:`ClassCounts`, :class:`MeanShift`; about 2.6 kB each) learns how it departs from the global model and corrects the
champion's prediction for it. The global model is never touched. How far a
session may depart (the adapters' prior, per feature and for the offset) is
learned from the sessions the model key has seen (:mod:`stream_cd.serving.session_prior`,
issue 18), so one session's feedback changes other sessions' predictions
through that population-level prior only: it sets where new sessions, and a
session's features not seen before, start, and never touches another session's
state. :class:`SessionStore` holds a model key's adapters and their prior,
bounded (LRU) and with a TTL in event time; it pickles into the checkpoint.

How it was chosen (``bench/coldstart.py``, tables in ``bench/README.md``): issue
5 picked :class:`LogitResidual` over four other adapters; with the learned prior
(issue 18) it is, at a new session's 10th event, as accurate as the best of
three fixed priors and a per-session SGD correction on each of four simulated
populations or better (0.737 against 0.689 where users' weights differ a lot),
and within a point of a full MAP refit that knows the true prior.

>>> store = SessionStore(LogitResidual, max_sessions=2, ttl_ms=60_000)
>>> global_p = {False: 0.7, True: 0.3}          # the champion's predict_proba_one
>>> store.predict("alice", {"f": 1.0}, global_p, ts=0) is global_p   # a new session: global as is
True
>>> for t in range(4):                            # alice says True where the model says False
...     store.learn("alice", {"f": 1.0}, True, global_p, ts=t * 1000)
>>> round(store.predict("alice", {"f": 1.0}, global_p, ts=5_000)[True], 3)
0.813
>>> store.predict("bob", {"f": 1.0}, global_p, ts=5_000) == global_p  # bob is untouched
True
>>> round(store.predict("alice", {"f": 1.0}, global_p, ts=70_000)[True], 3)  # idle > TTL: fresh
0.3
>>> store.stats()
{'sessions': 0, 'created': 1, 'evicted': 0, 'expired': 1}
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from stream_cd.serving.session_adapters import (
    ClassCounts,
    LogitResidual,
    MeanShift,
    SessionAdapter,
    as_proba,
    top_class,
)
from stream_cd.serving.session_prior import PopulationPrior

__all__ = [
    "SessionAdapter",
    "LogitResidual",
    "ClassCounts",
    "MeanShift",
    "SessionStore",
    "adapted_prediction",
    "as_proba",
    "top_class",
]


def adapted_prediction(adapter: SessionAdapter, x: dict, global_pred: Any) -> Any:
    """The session's adapted prediction, or the global one where the adaptation does not
    hold finite numbers (a session's weights pushed past what floats hold by extreme
    feature values): a session never serves NaN.

    >>> class Broken:
    ...     def predict(self, x, global_pred):
    ...         return {True: float("nan"), False: float("nan")}
    >>> adapted_prediction(Broken(), {}, {True: 0.7, False: 0.3})
    {True: 0.7, False: 0.3}
    """
    value = adapter.predict(x, global_pred)
    finite = all(map(math.isfinite, value.values())) if type(value) is dict else math.isfinite(value)
    return value if finite else global_pred


class SessionStore:
    """The adapters of one model key's sessions, bounded by count (LRU) and by idle time (TTL).

    Parameters
    ----------
    adapter
        Builds a fresh adapter for a new session: a class or a ``functools.partial`` of one
        (it is pickled with the store, so not a lambda).
    max_sessions
        At most this many sessions are kept; a new one evicts the least recently active.
    ttl_ms
        A session idle longer than this, in event time (milliseconds), starts fresh: continuous
        cold start. ``None``: no TTL. Events without a time neither expire nor refresh sessions.
    learn_prior
        Learn how far sessions depart from the global model from the sessions seen, as the
        ``prior`` its adapters share (:mod:`stream_cd.serving.session_prior`), if they can
        (:class:`LogitResidual`); False: each adapter keeps its fixed prior.

    A prediction request of an unknown session gets the global prediction and creates no state;
    only labelled events (``learn``) create sessions. Any event of a known session makes it the
    most recently active.

    Examples
    --------
    >>> store = SessionStore(ClassCounts, max_sessions=2, ttl_ms=None)
    >>> g = {False: 0.5, True: 0.5}
    >>> for s in ("a", "b", "a", "c"):              # "c" evicts "b", the least recent
    ...     store.learn(s, {}, True, g, ts=0)
    >>> list(store), store.stats()
    (['a', 'c'], {'sessions': 2, 'created': 3, 'evicted': 1, 'expired': 0})
    """

    prior: PopulationPrior | None = None  # what a checkpoint from before issue 18 restores to

    def __init__(
        self,
        adapter: Callable[[], SessionAdapter] = LogitResidual,
        max_sessions: int = 10_000,
        ttl_ms: int | None = 30 * 60 * 1000,
        learn_prior: bool = True,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions is {max_sessions}; it must be at least 1")
        if ttl_ms is not None and ttl_ms <= 0:
            raise ValueError(f"ttl_ms is {ttl_ms}; it must be positive (or None for no TTL)")
        self.adapter = adapter
        self.max_sessions = max_sessions
        self.ttl_ms = ttl_ms
        self.prior = adapter().new_population_prior() if learn_prior else None
        self._sessions: OrderedDict[Hashable, list] = OrderedDict()  # session -> [adapter, last ts]
        self.created = 0
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: Hashable) -> bool:
        return session in self._sessions

    def __iter__(self):
        """Sessions from the least to the most recently active."""
        return iter(self._sessions)

    def get(self, session: Hashable, ts: int | None = None) -> SessionAdapter | None:
        """The live adapter of a session (touching it), or None if unknown or expired at ``ts``."""
        entry = self._sessions.get(session)
        if entry is None:
            return None
        if ts is not None:
            last = entry[1]
            if self.ttl_ms is not None and last is not None and ts - last > self.ttl_ms:
                del self._sessions[session]
                self.expired += 1
                return None
            if last is None or ts > last:
                entry[1] = ts
        self._sessions.move_to_end(session)
        return entry[0]

    def predict(self, session: Hashable, x: dict, global_pred: Any, ts: int | None = None) -> Any:
        """The session's adapted prediction; the global one itself for an unknown session."""
        adapter = self.get(session, ts)
        if adapter is None:
            return global_pred
        return adapted_prediction(adapter, x, global_pred)

    def learn(self, session: Hashable, x: dict, y: Any, global_pred: Any, ts: int | None = None) -> None:
        """Update the session from its label; ``global_pred`` is the champion's prediction
        for this event made before the champion learned it."""
        adapter = self.get(session, ts)
        if adapter is None:
            adapter = self.adapter()
            if self.prior is not None:
                adapter.population = self.prior  # type: ignore[attr-defined]
            sessions = self._sessions
            sessions[session] = [adapter, ts]
            self.created += 1
            if len(sessions) > self.max_sessions:
                sessions.popitem(last=False)
                self.evicted += 1
        adapter.learn(x, y, global_pred)

    def stats(self) -> dict[str, int]:
        """Counters: live ``sessions``, and sessions ``created``, ``evicted`` (LRU), ``expired`` (TTL)."""
        return {"sessions": len(self._sessions), "created": self.created,
                "evicted": self.evicted, "expired": self.expired}
