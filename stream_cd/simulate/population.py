"""A simulated population of users whose sessions interleave in one event stream (issue 5).

Each event is one item shown to a user, with ``y`` whether the user liked it.
Items have ``n_features`` numeric attributes ``f0, f1, ...`` drawn from a
standard normal and one of ``n_genres`` genres, one-hot coded as ``genre_0,
genre_1, ...`` (0.0/1.0, so the ``logreg`` preset takes the events as they
are). The probability of a like is a logistic function of

* a global pattern worth learning: fixed weights on the attributes and on the
  genres, the same for everybody;
* each user's own departure from it: a base-rate offset ``~ N(0, user_bias)``
  (some users like most things, others almost nothing), a perturbation of
  every attribute weight ``~ N(0, user_weight)``, and a taste for every genre
  ``~ N(0, user_taste)``.

``departure`` and ``departure_scale`` (``stream-cd generate sessions
--departure bias|weights|both --departure-scale S``) set those spreads in
units of the global pattern instead, to make populations that differ in
different ways (issue 18): ``S`` is how far a user departs relative to the
global pattern. ``bias``: only the base-rate offset, ``~ N(0, S * sd)`` where
``sd`` is the spread of the global logit over items; ``weights``: every
attribute weight and genre effect ``g_j`` perturbed by ``~ N(0, S * |g_j|)``
(a user's weights depart by about ``S`` times the global weights' size, the
strong effects the most), no offset; ``both``: the two together.

Users arrive over time: ``concurrency`` sessions are open at once, each event
comes from one of them at random, and a session that has had its
``events_per_session`` events closes and lets the next user in, so a worker
sees many concurrent sessions and new ones keep starting. The stream is
deterministic for a seed.

>>> events = list(sessions_population(n_users=3, events_per_session=2, seed=1))
>>> len(events), sorted(events[0])
(6, ['id', 'key', 'session', 'ts', 'x', 'y'])
>>> [e["session"] for e in events]
['u1-000002', 'u1-000001', 'u1-000001', 'u1-000002', 'u1-000000', 'u1-000000']
>>> events[0]["x"]
{'f0': 0.2136, 'f1': 0.2173, 'f2': 2.1178, 'f3': -1.112, 'genre_0': 0.0, 'genre_1': 1.0, 'genre_2': 0.0, 'genre_3': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_cd.simulate.datasets import START_TS, STEP_MS
from stream_cd.errors import ConfigError

__all__ = ["sessions_population", "simulate_population", "departure_spreads", "Truth",
           "GLOBAL_WEIGHTS", "GLOBAL_GENRES", "DEPARTURES"]

GLOBAL_WEIGHTS = (1.2, -0.8, 0.6, 0.3, -0.5, 0.4, 0.2, -0.2)  # attribute weights of the global pattern
GLOBAL_GENRES = (0.6, -0.6, 0.3, -0.3, 0.5, -0.5, 0.2, -0.2)  # genre effects of the global pattern
DEPARTURES = ("bias", "weights", "both")  # how users depart from the global pattern (issue 18)


@dataclass(frozen=True, slots=True)
class Truth:
    """What the simulation knows of an event and a model cannot: the user's index, the event's
    position in its session (0-based) and the true probability of ``y``."""

    user: int
    k: int
    p: float


def _check(n_users: int, events_per_session: int, n_features: int, n_genres: int, concurrency: int) -> None:
    if n_users < 0:
        raise ConfigError(f"--n-users {n_users}: the number of users cannot be negative")
    if events_per_session < 1:
        raise ConfigError(f"--events-per-session {events_per_session}: a session needs at least one event")
    if not 1 <= n_features <= len(GLOBAL_WEIGHTS):
        raise ConfigError(f"n_features {n_features}: pick 1 to {len(GLOBAL_WEIGHTS)}")
    if not 2 <= n_genres <= len(GLOBAL_GENRES):
        raise ConfigError(f"n_genres {n_genres}: pick 2 to {len(GLOBAL_GENRES)}")
    if concurrency < 1:
        raise ConfigError(f"concurrency {concurrency}: at least one session must be open")


def departure_spreads(
    departure: str, scale: float, n_features: int = 4, n_genres: int = 4
) -> tuple[float, np.ndarray, np.ndarray]:
    """The spreads ``(user_bias, user_weight, user_taste)`` of a ``departure`` of size ``scale``.

    ``user_weight`` and ``user_taste`` are per attribute and per genre: ``scale`` times the
    size of the global weight; ``user_bias`` is ``scale`` times the spread of the global
    logit over items (so ``both`` moves a user's logit about as much by either part).

    >>> b, w, g = departure_spreads("both", 1.6)
    >>> round(b, 3), w.round(2).tolist(), g.round(2).tolist()
    (2.656, [1.92, 1.28, 0.96, 0.48], [0.96, 0.96, 0.48, 0.48])
    >>> b, w, g = departure_spreads("bias", 1.2)
    >>> round(b, 3), w.tolist(), g.tolist()
    (1.992, [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    """
    if departure not in DEPARTURES:
        raise ConfigError(f"--departure {departure!r}: pick one of {', '.join(DEPARTURES)}")
    if not (scale >= 0 and math.isfinite(scale)):
        raise ConfigError(f"--departure-scale {scale}: it must be a finite number >= 0")
    w = np.abs(np.array(GLOBAL_WEIGHTS[:n_features]))
    g = np.array(GLOBAL_GENRES[:n_genres])
    logit_sd = math.sqrt(float(w @ w) + float(np.mean(g**2)))
    bias = scale * logit_sd if departure in ("bias", "both") else 0.0
    keep = 1.0 if departure in ("weights", "both") else 0.0
    return bias, keep * scale * w, keep * scale * np.abs(g)


def simulate_population(
    n_users: int,
    events_per_session: int = 30,
    seed: int = 42,
    *,
    n_features: int = 4,
    n_genres: int = 4,
    user_bias: float = 2.0,
    user_weight: float | np.ndarray = 0.7,
    user_taste: float | np.ndarray = 1.0,
    departure: str | None = None,
    departure_scale: float = 1.0,
    concurrency: int = 200,
    key: str = "default",
    start_ts: int = START_TS,
    step_ms: int = STEP_MS,
) -> Iterator[tuple[dict[str, Any], Truth]]:
    """Yield ``(event, truth)`` pairs of the population; see :func:`sessions_population`."""
    _check(n_users, events_per_session, n_features, n_genres, concurrency)
    if departure is not None:
        user_bias, user_weight, user_taste = departure_spreads(departure, departure_scale, n_features, n_genres)
    rng = np.random.default_rng(seed)
    w_global = np.array(GLOBAL_WEIGHTS[:n_features])
    g_global = np.array(GLOBAL_GENRES[:n_genres])
    names = [f"f{j}" for j in range(n_features)]
    genres = [f"genre_{j}" for j in range(n_genres)]
    users: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
    done: dict[int, int] = {}

    def arrive(u: int) -> None:
        users[u] = (
            float(rng.normal(0.0, user_bias)),
            w_global + rng.normal(0.0, user_weight, n_features),
            g_global + rng.normal(0.0, user_taste, n_genres),
        )
        done[u] = 0

    open_: list[int] = []
    arrived = 0
    while arrived < min(concurrency, n_users):
        arrive(arrived)
        open_.append(arrived)
        arrived += 1
    i = 0
    while open_:
        slot = int(rng.integers(len(open_)))
        u = open_[slot]
        bias, w, g = users[u]
        z = rng.normal(0.0, 1.0, n_features)
        genre = int(rng.integers(n_genres))
        p = 1.0 / (1.0 + math.exp(-(bias + float(w @ z) + g[genre])))
        y = bool(rng.random() < p)
        x: dict[str, Any] = {name: round(float(v), 4) for name, v in zip(names, z)}
        x.update({name: float(j == genre) for j, name in enumerate(genres)})
        event = {"key": key, "id": f"sessions-{seed}-{i}", "ts": start_ts + i * step_ms,
                 "session": f"u{seed}-{u:06d}", "x": x, "y": y}
        yield event, Truth(u, done[u], p)
        i += 1
        done[u] += 1
        if done[u] == events_per_session:
            del users[u], done[u]
            if arrived < n_users:
                arrive(arrived)
                open_[slot] = arrived
                arrived += 1
            else:
                open_.pop(slot)


def sessions_population(
    n_users: int,
    events_per_session: int = 30,
    seed: int = 42,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Yield the ``n_users * events_per_session`` events of a simulated population.

    Parameters
    ----------
    n_users
        Users, each with one session of ``events_per_session`` events.
    events_per_session
        Events (all labelled) of each session.
    seed
        The stream is a function of the seed and the options.
    **options
        ``n_features`` (4), ``n_genres`` (4), ``user_bias`` (2.0), ``user_weight`` (0.7),
        ``user_taste`` (1.0): the spread of users around the global pattern (0 for all three
        makes every user the global pattern), or instead ``departure`` (``"bias"``,
        ``"weights"`` or ``"both"``) and ``departure_scale`` (1.0), see
        :func:`departure_spreads`; ``concurrency`` (200) open sessions; ``key``,
        ``start_ts``, ``step_ms`` of the events.

    Examples
    --------
    >>> a = list(sessions_population(50, 10, seed=3))
    >>> a == list(sessions_population(50, 10, seed=3)), a == list(sessions_population(50, 10, seed=4))
    (True, False)
    >>> round(sum(e["y"] for e in a) / len(a), 3), len({e["session"] for e in a})
    (0.534, 50)
    >>> b = list(sessions_population(50, 10, seed=3, departure="weights", departure_scale=0.0))
    >>> [e["x"] for e in b] == [e["x"] for e in a], round(sum(e["y"] for e in b) / len(b), 3)
    (True, 0.492)
    """
    for event, _ in simulate_population(n_users, events_per_session, seed, **options):
        yield event
