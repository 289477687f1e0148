"""Stateful fine-tuning against stateless retraining, at several update frequencies.

Both serve a frozen model between updates, which come every ``every`` events:

* stateful: the deployed model learns the events since the last update and goes on;
* stateless: a fresh model is trained from scratch on the last ``window`` events.

Both start from a model trained on the first ``window`` events, and are scored
on every later event with the model deployed when it came (so a longer
interval serves staler models); the training time of each is measured.

>>> xs = [{"f": float(i % 5)} for i in range(1_200)]
>>> ys = [i % 5 > 1 for i in range(1_200)]
>>> rows = update_study(xs, ys, "logreg", every=[100, 400], window=400)
>>> [(r.strategy, r.every, r.updates) for r in rows]
[('stateful', 100, 8), ('stateless', 100, 8), ('stateful', 400, 2), ('stateless', 400, 2)]
>>> all(r.value == 1.0 for r in rows)
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stream_cd.analysis.freshness import task_of
from stream_cd.errors import ConfigError
from stream_cd.learning.specs import ModelSpec

__all__ = ["UpdateRow", "update_study", "STRATEGIES"]

STRATEGIES = ("stateful", "stateless")


@dataclass
class UpdateRow:
    strategy: str
    every: int
    value: float  # accuracy or mean absolute error over the scored events
    train_seconds: float
    updates: int
    scored: int


def _train(model: Any, xs: Sequence[dict], ys: Sequence[Any]) -> float:
    learn = model.learn_one
    t = time.perf_counter()
    for x, y in zip(xs, ys):
        learn(x, y)
    return time.perf_counter() - t


def update_study(xs: Sequence[dict], ys: Sequence[Any], spec: str, *, every: Sequence[int], window: int,
                 progress: Callable[[int], None] | None = None) -> list[UpdateRow]:
    """One row per strategy and update frequency (see the module docstring); ``progress(1)`` after each update."""
    model_spec = ModelSpec.parse(spec)
    task = task_of(model_spec, ys)
    n = len(xs)
    if n <= window:
        raise ConfigError(f"the stream has {n:,} labeled events; updating needs more than the window of {window:,}")
    rows: list[UpdateRow] = []
    classification = task == "classification"
    for f in sorted(set(every)):
        for strategy in STRATEGIES:
            model = model_spec.build()
            seconds = _train(model, xs[:window], ys[:window])
            hits = 0.0
            updates = 0
            for start in range(window, n, f):
                stop = min(start + f, n)
                predict = model.predict_one
                for x, y in zip(xs[start:stop], ys[start:stop]):
                    p = predict(x)
                    hits += (p == y) if classification else abs(float(y) - (0.0 if p is None else float(p)))
                if strategy == "stateful":
                    seconds += _train(model, xs[start:stop], ys[start:stop])
                else:
                    model = model_spec.build()
                    seconds += _train(model, xs[max(0, stop - window) : stop], ys[max(0, stop - window) : stop])
                updates += 1
                if progress is not None:
                    progress(1)
            scored = n - window
            rows.append(UpdateRow(strategy, f, hits / scored, seconds, updates, scored))
    return rows


def update_steps(n: int, window: int, every: Sequence[int]) -> int:
    """How many updates :func:`update_study` makes (for a progress bar's total).

    >>> update_steps(1_200, 400, [100, 400])
    20
    """
    return sum(len(STRATEGIES) * len(range(window, n, f)) for f in set(every))
