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
