"""The value of data freshness: how much worse a model trained on older data does on the newest.

At several evaluation points along the stream, for each lag L, a model is
trained from scratch on the ``window`` events that end L events before the
most recent ``eval`` events, then evaluated (frozen) on those ``eval`` events.
The spread over the points, and the paired difference of each lag to the
freshest (same points, same evaluation events), tell whether fresher data is
measurably better on this stream. This is the lecture's question ("what is the
gain when switching from retraining monthly to weekly to daily?") asked of a
recorded stream.

>>> xs = [{"f": float(i % 7)} for i in range(600)]
>>> ys = [i % 7 > 2 for i in range(600)]
>>> result = staleness_study(xs, ys, "logreg", lags=[0, 100], window=200, eval_n=100, points=3)
>>> result.points, [row.lag for row in result.rows], result.metric
([400, 500, 600], [0, 100], 'Accuracy')
>>> result.rows[0].values == result.rows[1].values   # a stationary stream: old data is as good
True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_cd.errors import ConfigError
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.tasks import infer_task

__all__ = ["StalenessRow", "StalenessResult", "staleness_study", "evaluation_points", "score", "task_of", "mean_and_spread"]

Progress = Callable[[int], None]


def task_of(spec: ModelSpec, ys: Sequence[Any]) -> str:
    """The task: the spec's, else inferred from the first label."""
    return spec.task or infer_task(ys[0])


def score(task: str, model: Any, xs: Sequence[dict], ys: Sequence[Any]) -> float:
    """Accuracy (classification) or mean absolute error (regression) of a frozen model on the events."""
    predict = model.predict_one
    if task == "classification":
        return sum(predict(x) == y for x, y in zip(xs, ys)) / len(ys)
    total = 0.0
    for x, y in zip(xs, ys):
        p = predict(x)
        total += abs(float(y) - (0.0 if p is None else float(p)))
    return total / len(ys)


def mean_and_spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean, standard deviation and standard error of the mean (0 for one value).

    >>> mean_and_spread([1.0, 2.0, 3.0])
    (2.0, 1.0, 0.5773502691896258)
    """
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd, sd / math.sqrt(len(values))


def evaluation_points(n: int, window: int, eval_n: int, lags: Sequence[int], points: int) -> list[int]:
    """Ends of the evaluation blocks: evenly spaced from the first one every lag can reach to the end.

    >>> evaluation_points(10_000, 1000, 500, [0, 2000], 4)
    [3500, 5667, 7833, 10000]
    """
    first = window + max(lags) + eval_n
    if n < first:
        raise ConfigError(f"the stream has {n:,} labeled events; a window of {window:,}, the largest lag "
                          f"{max(lags):,} and {eval_n:,} evaluation events need at least {first:,}")
    if points == 1 or n == first:
        return [n]
    return [first + round(k * (n - first) / (points - 1)) for k in range(points)]


@dataclass
class StalenessRow:
    """One lag: its metric at each point, and its paired difference to the freshest lag."""

    lag: int
    values: list[float]
    mean: float = 0.0
    sd: float = 0.0
    diff_mean: float = 0.0  # this lag minus the freshest, over the same points
    diff_sd: float = 0.0
    diff_se: float = 0.0


@dataclass
class StalenessResult:
    spec: str
    metric: str  # Accuracy or MAE
    window: int
    eval_n: int
    points: list[int]
    rows: list[StalenessRow] = field(default_factory=list)
    train_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "metric": self.metric, "window": self.window, "eval": self.eval_n,
                "points": self.points, "train_seconds": self.train_seconds,
                "rows": [row.__dict__ for row in self.rows]}


def staleness_study(xs: Sequence[dict], ys: Sequence[Any], spec: str, *, lags: Sequence[int], window: int, eval_n: int,
                    points: int, progress: Progress | None = None) -> StalenessResult:
    """One model per lag and evaluation point (see the module docstring); ``progress(1)`` after each."""
    import time

    model_spec = ModelSpec.parse(spec)
    task = task_of(model_spec, ys)
    lags = sorted(set(lags))
    ends = evaluation_points(len(xs), window, eval_n, lags, points)
    values: dict[int, list[float]] = {lag: [] for lag in lags}
    trained = 0.0
    for end in ends:
        start_eval = end - eval_n
        ex, ey = xs[start_eval:end], ys[start_eval:end]
        for lag in lags:
            stop = start_eval - lag
            model = model_spec.build()
            learn = model.learn_one
            t = time.perf_counter()
            for x, y in zip(xs[stop - window : stop], ys[stop - window : stop]):
                learn(x, y)
            trained += time.perf_counter() - t
            values[lag].append(score(task, model, ex, ey))
            if progress is not None:
                progress(1)
    result = StalenessResult(spec, "Accuracy" if task == "classification" else "MAE", window, eval_n, ends,
                             train_seconds=trained)
    fresh = values[lags[0]]
    for lag in lags:
        row = StalenessRow(lag, values[lag])
        row.mean, row.sd, _ = mean_and_spread(values[lag])
        row.diff_mean, row.diff_sd, row.diff_se = mean_and_spread([v - f for v, f in zip(values[lag], fresh)])
        result.rows.append(row)
    return result
