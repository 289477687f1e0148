"""Measuring cold-start adaptation: how well new sessions are served, event by event (issue 18).

One stream of :mod:`stream_cd.simulate.population` events; a global ``logreg`` serves
and learns every event as in production (predict, score, learn). The first
``warm_users`` users' sessions train it, and teach any store that learns a
population prior; the next ``eval_users`` users' sessions are the new sessions
measured. Each method keeps its own :class:`~stream_cd.serving.sessions.SessionStore`
and is scored on the same global prediction (adapters never touch the global
model, so one global model serves all of them). The result is accuracy and log
loss at the k-th event of a new session, k = 1, 2, ...

The populations of the comparison (:data:`POPULATIONS`, see
:func:`stream_cd.simulate.population.departure_spreads`) and the methods
(:func:`methods`): global only, the adapter with a fixed prior (today's
default, a more cautious and a bolder one), the adapter with the learned prior,
and a per-session SGD correction with fixed step sizes (:class:`SGDResidual`).

>>> result = accuracy_at_k(POPULATIONS["weights-large"], methods(), warm_users=100, eval_users=100)
>>> sorted(result.accuracy) == sorted(["global", *methods()]), result.sessions
(True, 100)
>>> result.accuracy["learned"][0] == result.accuracy["global"][0]   # the 1st event: global as is
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_cd.simulate.population import simulate_population
from stream_cd.serving.sessions import LogitResidual, SessionAdapter, SessionStore, as_proba, top_class
from stream_cd.learning.specs import ModelSpec

__all__ = ["POPULATIONS", "SGDResidual", "methods", "accuracy_at_k", "ColdStart"]

POPULATIONS: dict[str, dict[str, Any]] = {
    "bias": {"departure": "bias", "departure_scale": 1.2},  # base rates only (offset sd 2.0)
    "weights-small": {"departure": "weights", "departure_scale": 0.3},
    "weights-large": {"departure": "both", "departure_scale": 1.6},  # weights 1.6x, plus an offset
    "weights-large-only": {"departure": "weights", "departure_scale": 1.6},  # the same weights, no offset
}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


class SGDResidual(SessionAdapter):
    """Binary classification: a per-session logistic correction ``logit(p) + b + w . x`` fitted by
    plain SGD on the log loss with fixed step sizes (the baseline of issue 18).

    >>> a = SGDResidual()
    >>> for _ in range(5):
    ...     a.learn({"f": 1.0}, True, {False: 0.6, True: 0.4})
    >>> round(a.predict({"f": 1.0}, {False: 0.6, True: 0.4})[True], 3), a.weight
    (0.749, 1.0)
    """

    __slots__ = ("step_bias", "step_weight", "_w")

    def __init__(self, step_bias: float = 0.5, step_weight: float = 0.2) -> None:
        super().__init__()
        self.step_bias = step_bias
        self.step_weight = step_weight
        self._w: dict[str, float] = {}

    @property
    def weight(self) -> float:
        return 1.0 if self.n else 0.0

    def _p(self, x: dict, global_pred: Any) -> float:
        w = self._w
        z = _logit(as_proba(global_pred).get(True, 0.0)) + w.get("", 0.0)
        z += sum(w.get(name, 0.0) * v for name, v in x.items())
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def predict(self, x: dict, global_pred: Any) -> Any:
        if self.n == 0:
            return global_pred
        q = self._p(x, global_pred)
        return {False: 1.0 - q, True: q}

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        err = float(y is True) - self._p(x, global_pred)
        w = self._w
        w[""] = w.get("", 0.0) + self.step_bias * err
        for name, v in x.items():
            w[name] = w.get(name, 0.0) + self.step_weight * err * v
        self.n += 1


def methods() -> dict[str, Callable[[], SessionStore]]:
    """The compared methods, each a builder of its store (``global`` is added by the measurement)."""
    fixed = functools.partial(SessionStore, max_sessions=10_000, ttl_ms=None, learn_prior=False)
    return {
        "fixed (today)": functools.partial(fixed, LogitResidual),
        "fixed, cautious": functools.partial(fixed, functools.partial(LogitResidual, prior_bias=0.75, prior_weight=0.25)),
        "fixed, bold": functools.partial(fixed, functools.partial(LogitResidual, prior_bias=3.0, prior_weight=1.0)),
        "sgd (fixed steps)": functools.partial(fixed, SGDResidual),
        "learned": functools.partial(SessionStore, LogitResidual, max_sessions=10_000, ttl_ms=None),
    }


@dataclass
class ColdStart:
    """Accuracy and log loss per method at k = 1, 2, ... (index k - 1), over ``sessions``
    new sessions; ``correct`` holds each session's 0/1 outcome at each k (for paired tests)."""

    accuracy: dict[str, list[float]]
    log_loss: dict[str, list[float]]
    sessions: int
    correct: dict[str, np.ndarray]
    stores: dict[str, SessionStore]


def accuracy_at_k(
    population: Mapping[str, Any],
    stores: Mapping[str, Callable[[], SessionStore]],
    *,
    warm_users: int = 2000,
    eval_users: int = 3000,
    events_per_session: int = 30,
    seed: int = 1,
) -> ColdStart:
    """Run the population's stream through the global model and every method's store."""
    built = {name: make() for name, make in stores.items()}
    learn_early = {name: store for name, store in built.items() if store.prior is not None}
    names = ["global", *built]
    correct = {m: np.zeros((eval_users, events_per_session), dtype=bool) for m in names}
    loss = {m: np.zeros(events_per_session) for m in names}
    model = ModelSpec.parse("logreg").build()
    stream = simulate_population(warm_users + eval_users, events_per_session, seed, **population)
    for event, truth in stream:
        x, y, session, ts = event["x"], event["y"], event["session"], event["ts"]
        proba = model.predict_proba_one(x)
        if truth.user < warm_users:
            for store in learn_early.values():  # the sessions a model key has seen before
                store.learn(session, x, y, proba, ts)
        else:
            _score(built, correct, loss, (truth.user - warm_users, truth.k), x, y, session, ts, proba)
        model.learn_one(x, y)
    return ColdStart(
        accuracy={m: correct[m].mean(axis=0).tolist() for m in names},
        log_loss={m: (loss[m] / eval_users).tolist() for m in names},
        sessions=eval_users, correct=correct, stores=built,
    )


def _score(built: dict, correct: dict, loss: dict, at: tuple[int, int], x: dict, y: Any,
           session: str, ts: int, proba: dict) -> None:
    """Score every method on one event of a new session, then let each session learn it."""
    preds = {"global": proba}
    for name, store in built.items():
        preds[name] = store.predict(session, x, proba, ts)
    for name, pred in preds.items():
        correct[name][at] = top_class(pred) == y
        loss[name][at[1]] -= math.log(max(1e-15, as_proba(pred).get(y, 0.0)))
    for store in built.values():
        store.learn(session, x, y, proba, ts)
