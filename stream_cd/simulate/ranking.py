"""A simulated population searching a ranking service, with position-biased clicks (issue 16).

* Items: ``n_items``, each with ``n_features`` topic attributes ``f0, f1, ...``
  drawn from a standard normal and a ``quality``, also standard normal.
* Users: each has a click propensity ``b_u ~ N(0, user_bias)``: some click much,
  others hardly at all (the main noise of an A/B test of rankers).
* Queries: an intent ``f0, f1, ...`` (standard normal), ``candidates`` items
  drawn without replacement from all items, and the length ``k`` of the list to serve.
* Relevance: an item is relevant to a query with probability
  ``sigmoid(base + b_u + quality_weight * quality + match_weight * q . v / sqrt(n_features))``,
  ``q . v`` the dot product of the query's intent and the item's attributes. The
  match is worth learning, and learnable: it is a sum of products of query and
  item features of the same name, the ``qi_`` features of a ranker
  (:mod:`stream_cd.learning.ranker`); a ranker without them can learn only quality.
* Clicks: the position-based model (Craswell, Zoeter, Taylor and Ramsey 2008;
  Chuklin, Markov and de Rijke 2015, "Click models for web search"): the user
  examines rank r (0 the top) with probability ``1 / (r + 1) ** position_decay``
  and clicks each relevant item examined.

Whether each candidate is relevant and each rank examined is drawn when the
request is made, so the stream of requests is the same whatever serves it and
only the clicks depend on what was served. :meth:`RankingPopulation.impressions`
draws many requests at once as arrays (for vectorised simulations,
:mod:`stream_cd.simulate.interleaving`); :func:`ranking_events` writes a stream of
ranking requests and their clicks, ``min_delay`` to ``max_delay`` requests later,
as a service answering them would see it: ``serve`` is asked for each request's
served list (by default, the first ``k`` candidates in the order drawn) and
``feedback`` hears each click event, in stream order, so a service that learns
from the clicks ranks the next requests as it would live.

>>> events = list(ranking_events(n_users=2, queries_per_user=2, n_items=50, seed=1, candidates=4, k=3, max_delay=1))
>>> [("items" in e, e["id"]) for e in events]
[(True, 'rank-1-0'), (False, 'rank-1-0'), (True, 'rank-1-1'), (False, 'rank-1-1'), (True, 'rank-1-2'), (False, 'rank-1-2'), (True, 'rank-1-3'), (False, 'rank-1-3')]
>>> sorted(events[0]), events[0]["k"], len(events[0]["items"]), sorted(events[0]["items"][0]["x"])
(['id', 'items', 'k', 'key', 'ts', 'user', 'x'], 3, 4, ['f0', 'f1', 'f2', 'f3', 'quality'])
>>> [e["clicked"] for e in events if "clicked" in e]
[['i0'], [], ['i1'], []]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from stream_cd.errors import ConfigError
from stream_cd.simulate.datasets import START_TS, STEP_MS

__all__ = ["PopulationParams", "RankingPopulation", "Impressions", "ranking_events"]


@dataclass(frozen=True)
class PopulationParams:
    """The population's shape (see the module docstring)."""

    n_items: int = 1000
    n_features: int = 4
    candidates: int = 20
    k: int = 10
    base: float = -1.5
    user_bias: float = 1.0
    quality_weight: float = 0.7
    match_weight: float = 1.5
    position_decay: float = 1.0

    def __post_init__(self) -> None:
        if self.n_items < 2:
            raise ConfigError(f"--items {self.n_items}: a ranking needs at least 2 items")
        if not 2 <= self.candidates <= self.n_items:
            raise ConfigError(f"--candidates {self.candidates} must be 2 to the number of items ({self.n_items})")
        if not 1 <= self.k:
            raise ConfigError(f"--k {self.k} must be at least 1")
        if not 1 <= self.n_features <= 32:
            raise ConfigError(f"n_features {self.n_features}: pick 1 to 32")
        if self.user_bias < 0 or self.position_decay < 0:
            raise ConfigError("user_bias and position_decay cannot be negative")


class Impressions(NamedTuple):
    """``n`` requests as arrays: intents ``(n, d)``, candidates ``(n, m)`` (item indexes), each
    candidate's quality and match ``(n, m)``, whether it is relevant ``(n, m)`` and whether each
    rank is examined ``(n, min(k, m))``."""

    queries: np.ndarray
    candidates: np.ndarray
    quality: np.ndarray
    match: np.ndarray
    relevant: np.ndarray
    examined: np.ndarray


class RankingPopulation:
    """Items and the click model of one simulated population, seeded."""

    def __init__(self, params: PopulationParams = PopulationParams(), seed: int = 0) -> None:
        self.params = p = params
        self.rng = np.random.default_rng(seed)
        self.attributes = np.round(self.rng.normal(size=(p.n_items, p.n_features)), 4)
        self.quality = np.round(self.rng.normal(size=p.n_items), 4)
        length = min(p.k, p.candidates)
        self.examine = 1.0 / np.arange(1, length + 1) ** p.position_decay

    def user_biases(self, n: int) -> np.ndarray:
        return self.rng.normal(0.0, self.params.user_bias, n)

    def impressions(self, bias: np.ndarray) -> Impressions:
        """One request for each user propensity in ``bias``."""
        p, rng = self.params, self.rng
        n = bias.shape[0]
        queries = np.round(rng.normal(size=(n, p.n_features)), 4)
        candidates = np.argsort(rng.random((n, p.n_items)), axis=1)[:, : p.candidates] if p.n_items <= 4 * p.candidates \
            else _sample_without_replacement(rng, n, p.n_items, p.candidates)
        quality = self.quality[candidates]
        match = np.einsum("nd,nmd->nm", queries, self.attributes[candidates]) / math.sqrt(p.n_features)
        logit = p.base + bias[:, None] + p.quality_weight * quality + p.match_weight * match
        relevant = rng.random(logit.shape) < 1.0 / (1.0 + np.exp(-logit))
        examined = rng.random((n, self.examine.size)) < self.examine
        return Impressions(queries, candidates, quality, match, relevant, examined)


def _sample_without_replacement(rng: np.random.Generator, n: int, population: int, size: int) -> np.ndarray:
    """``n`` rows of ``size`` distinct indexes below ``population`` (rejection of repeats)."""
    out = rng.integers(population, size=(n, size))
    while True:
        ordered = np.sort(out, axis=1)
        repeated = np.any(ordered[:, 1:] == ordered[:, :-1], axis=1)
        if not repeated.any():
            return out
        out[repeated] = rng.integers(population, size=(int(repeated.sum()), size))


def ranking_events(
    n_users: int,
    queries_per_user: int = 10,
    n_items: int = 1000,
    seed: int = 42,
    *,
    serve: Callable[[dict[str, Any]], Sequence[str]] | None = None,
    feedback: Callable[[dict[str, Any]], None] | None = None,
    min_delay: int = 1,
    max_delay: int = 50,
    concurrency: int = 100,
    key: str = "default",
    start_ts: int = START_TS,
    step_ms: int = STEP_MS,
    **params: Any,
) -> Iterator[dict[str, Any]]:
    """Ranking requests and their clicks, ``queries_per_user`` per user, users ``concurrency`` at a time.

    ``serve(request)`` returns the ids of the items served for it, in order (default: the
    first ``k`` candidates); ``feedback(clicks)`` hears each click event as it is yielded.
    ``params``: :class:`PopulationParams` besides ``n_items``.
    """
    if n_users < 1 or queries_per_user < 1:
        raise ConfigError(f"--n-users {n_users} and --queries-per-user {queries_per_user} must be at least 1")
    if not 0 <= min_delay <= max_delay:
        raise ConfigError(f"feedback delay {min_delay}:{max_delay}: need 0 <= MIN <= MAX")
    population = RankingPopulation(PopulationParams(n_items=n_items, **params), seed)
    p, rng = population.params, population.rng
    delays = np.random.default_rng([seed, 1])
    item_x = [{**{f"f{j}": float(v) for j, v in enumerate(population.attributes[i])},
               "quality": float(population.quality[i])} for i in range(p.n_items)]
    users = list(range(min(concurrency, n_users)))
    bias = {u: float(b) for u, b in zip(users, population.user_biases(len(users)))}
    asked = dict.fromkeys(users, 0)
    arrived = len(users)
    due: list[tuple[int, int, dict[str, Any]]] = []  # (request index it comes before, tie-break, clicks)
    i = 0
    while users:
        slot = int(rng.integers(len(users)))
        u = users[slot]
        ts = start_ts + i * step_ms
        while due and due[0][0] <= i:
            clicks = heapq.heappop(due)[2]
            clicks["ts"] = ts
            if feedback is not None:
                feedback(clicks)
            yield clicks
        drawn = population.impressions(np.array([bias[u]]))
        candidates = drawn.candidates[0]
        request = {"key": key, "id": f"rank-{seed}-{i}", "ts": ts, "user": f"u{seed}-{u:06d}",
                   "x": {f"f{j}": float(v) for j, v in enumerate(drawn.queries[0])},
                   "items": [{"id": f"i{c}", "x": item_x[c]} for c in candidates], "k": p.k}
        served = serve(request) if serve is not None else [f"i{c}" for c in candidates[: p.k]]
        yield request
        relevant = {f"i{c}" for c, r in zip(candidates, drawn.relevant[0]) if r}
        clicked = [item for item, seen in zip(served, drawn.examined[0]) if seen and item in relevant]
        clicks = {"key": key, "id": request["id"], "ts": ts, "clicked": clicked}
        delay = int(delays.integers(min_delay, max_delay + 1))
        if delay == 0:
            if feedback is not None:
                feedback(clicks)
            yield clicks
        else:
            heapq.heappush(due, (i + delay, i, clicks))
        i += 1
        asked[u] += 1
        if asked[u] == queries_per_user:
            del asked[u], bias[u]
            if arrived < n_users:
                users[slot] = arrived
                asked[arrived], bias[arrived] = 0, float(population.user_biases(1)[0])
                arrived += 1
            else:
                users.pop(slot)
    while due:
        clicks = heapq.heappop(due)[2]
        if feedback is not None:
            feedback(clicks)
        yield clicks
