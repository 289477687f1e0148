"""Event streams from River's offline generators and bundled datasets.

Each stream yields event dicts in the format of the design notes. A drift at
``drift_at`` switches abruptly to a second generator with another concept
(River's ``ConceptDriftStream`` overflows for a change far into a stream).

>>> events = list(generate("agrawal", n=3, seed=7))
>>> sorted(events[0]), events[0]["key"], type(events[0]["y"]).__name__
(['id', 'key', 'ts', 'x', 'y'], 'default', 'bool')
>>> [e["ts"] - events[0]["ts"] for e in events]
[0, 100, 200]
>>> len(list(generate("phishing", n=10_000)))
Traceback (most recent call last):
...
stream_cd.errors.ConfigError: phishing has 1250 events; ask for at most 1250
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from river import datasets
from river.datasets import synth

from stream_cd.errors import ConfigError

__all__ = ["GENERATORS", "generate", "START_TS", "STEP_MS"]

START_TS = 1_732_600_000_000
STEP_MS = 100


def _agrawal(seed: int, concept: int) -> Iterable:
    return synth.Agrawal(classification_function=(0, 2)[concept], seed=seed + concept)


def _sea(seed: int, concept: int) -> Iterable:
    return synth.SEA(variant=(0, 3)[concept], seed=seed + concept)


def _hyperplane(seed: int, concept: int) -> Iterable:
    return synth.Hyperplane(seed=seed + 1000 * concept, n_features=10)


def _rotating_hyperplane(seed: int, concept: int) -> Iterable:
    """A concept that drifts all the time: half the weights move 0.001 an event (reversing at random)."""
    return synth.Hyperplane(seed=seed + 1000 * concept, n_features=10, n_drift_features=5, mag_change=0.001, sigma=0.1)


# name -> (stream of one concept, size of a bundled dataset or None for unbounded)
GENERATORS: dict[str, tuple[Callable[[int, int], Iterable], int | None]] = {
    "agrawal": (_agrawal, None),
    "sea": (_sea, None),
    "hyperplane": (_hyperplane, None),
    "rotating-hyperplane": (_rotating_hyperplane, None),
    "phishing": (lambda seed, concept: datasets.Phishing(), 1250),
}


def _label(y: Any) -> Any:
    if isinstance(y, bool):
        return y
    if isinstance(y, int):  # binary synth labels are 0/1
        return bool(y) if y in (0, 1) else y
    return y


def _feature(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def generate(
    name: str, n: int, seed: int = 42, drift_at: int | None = None, key: str = "default"
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` events of a named stream, with an abrupt concept change at ``drift_at``."""
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r}; pick one of {', '.join(sorted(GENERATORS))}")
    if n < 0:
        raise ConfigError(f"--n {n}: the number of events cannot be negative")
    make, size = GENERATORS[name]
    if size is not None:
        if n > size:
            raise ConfigError(f"{name} has {size} events; ask for at most {size}")
        if drift_at is not None:
            raise ConfigError(f"{name} is a recorded dataset; it has no --drift-at")
    if drift_at is not None and not 0 < drift_at < n:
        raise ConfigError(f"--drift-at {drift_at} must lie between 1 and n-1 ({n - 1})")
    first = drift_at if drift_at is not None else n
    pairs = itertools.chain(
        itertools.islice(make(seed, 0), first),
        itertools.islice(make(seed, 1), n - first),
    )
    for i, (x, y) in enumerate(pairs):
        yield {
            "key": key,
            "id": f"{name}-{seed}-{i}",
            "ts": START_TS + i * STEP_MS,
            "x": {(k if isinstance(k, str) else f"x{k}"): _feature(v) for k, v in x.items()},
            "y": _label(y),
        }
