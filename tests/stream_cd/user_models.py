"""User models for tests, importable as ``tests.stream_cd.user_models:FACTORY`` specs."""

from __future__ import annotations

import itertools
import random

_instances = itertools.count()


class NoisyOracle:
    """A classifier right with probability 1 - ``error`` on every event, its errors independent
    of every other instance's (a seed of its own): two of them are equally good models whose
    errors are independent. The truth of an event is ``x["u"] > 0.5``."""

    def __init__(self, error: float = 0.2) -> None:
        self.error = error
        self.rng = random.Random(next(_instances))

    def predict_one(self, x: dict) -> bool:
        return (x["u"] > 0.5) != (self.rng.random() < self.error)

    def learn_one(self, x: dict, y: bool) -> None:
        pass


def noisy_oracle() -> NoisyOracle:
    return NoisyOracle()


class RegionMemory:
    """A classifier that remembers the majority label of each region ``x["r"]`` it has learned,
    answers it with probability 1 - ``noise``, and guesses in a region it has never seen:
    it knows exactly what it was shown, and nothing else (what a retrain born after a change
    knows of the time before it)."""

    def __init__(self, noise: float) -> None:
        self.noise = noise
        self.counts: dict[int, list[int]] = {}
        self.rng = random.Random(next(_instances))

    def predict_one(self, x: dict) -> bool:
        counts = self.counts.get(x["r"])
        if counts is None:
            return self.rng.random() < 0.5
        return (counts[1] >= counts[0]) != (self.rng.random() < self.noise)

    def learn_one(self, x: dict, y: bool) -> None:
        self.counts.setdefault(x["r"], [0, 0])[bool(y)] += 1


def region_memory_noisy() -> RegionMemory:
    return RegionMemory(0.15)


def region_memory_exact() -> RegionMemory:
    return RegionMemory(0.0)


def _item_features(x: dict) -> dict:
    return {name: value for name, value in x.items() if name.startswith("i_")}


def item_only_ranker():
    """A logreg ranker that sees only the items' own features (``i_``): it can learn which items
    are good, not which suit the query."""
    from river import compose, linear_model, preprocessing

    return compose.FuncTransformer(_item_features) | preprocessing.StandardScaler() | linear_model.LogisticRegression()


def _cannot_load() -> None:
    raise RuntimeError("this model cannot be loaded back")


class Unloadable(NoisyOracle):
    """A :class:`NoisyOracle` that pickles but does not unpickle (as a model whose class has
    changed since it was pickled)."""

    def __reduce__(self):
        return _cannot_load, ()


def unloadable() -> Unloadable:
    return Unloadable()
