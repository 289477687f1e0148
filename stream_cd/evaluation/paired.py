"""Champion against challenger: paired significance tests on per-event losses.

Both models score every labeled event, so their losses come in pairs and a
paired test is the right one. Classification uses the exact McNemar test: on
the events where exactly one model is right, the challenger's wins follow
Binomial(n, 1/2) when both are equally good (``scipy.stats.binomtest``).
Regression uses a paired t-test on the loss differences
(``scipy.stats.ttest_1samp``). Tests run on a sliding window of the most
recent pairs, once at least ``min_sample`` pairs are in and then every
``every`` pairs.

Verdicts: ``promote`` when the challenger is significantly better at level
``alpha``; ``drop`` when it has been compared on ``budget`` pairs and is still
not better (its mean loss is at least the champion's); ``keep`` otherwise,
reported once per full window so the control topic is not flooded.

>>> import random
>>> rng = random.Random(1)
>>> cmp = McNemarComparator(alpha=0.01, min_sample=200, window=1000, every=100)
>>> verdicts = []
>>> for i in range(2000):
...     champion_wrong = rng.random() < 0.30
...     challenger_wrong = rng.random() < 0.15
...     verdict = cmp.update(float(champion_wrong), float(challenger_wrong))
...     if verdict:
...         verdicts.append((i + 1, verdict.action))
>>> verdicts[0]
(200, 'promote')
>>> round(cmp.evaluate().evidence["p_value"], 12) < 0.01
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

__all__ = ["Verdict", "PairedComparator", "McNemarComparator", "PairedTTestComparator", "make_comparator"]


@dataclass(frozen=True)
class Verdict:
    """What the comparator concluded, with the evidence for it."""

    action: str  # promote | keep | drop
    evidence: dict[str, Any] = field(default_factory=dict)


class PairedComparator:
    """Sliding window of paired losses; subclasses supply the test."""

    test_name = "paired"
    challenger_wins = champion_wins = 0  # for windows pickled before they were counted here

    def __init__(
        self,
        alpha: float = 0.01,
        min_sample: int = 1000,
        window: int = 5000,
        every: int = 500,
        budget: int = 20000,
    ) -> None:
        self.alpha = alpha
        self.min_sample = min_sample
        self.window = window
        self.every = every
        self.budget = budget
        self.pairs: deque[tuple[float, float]] = deque(maxlen=window)
        self.seen = 0
        self.champion_sum = 0.0
        self.challenger_sum = 0.0
        self.challenger_wins = 0  # pairs in the window where the challenger's loss is lower
        self.champion_wins = 0  # ... and where the champion's is
        self._last_keep = 0

    def reset(self) -> None:
        """Forget all pairs, for a new challenger."""
        self.__init__(self.alpha, self.min_sample, self.window, self.every, self.budget)  # type: ignore[misc]

    def update(self, champion_loss: float, challenger_loss: float) -> Verdict | None:
        """Add one pair; return a verdict when one is due, else None."""
        pairs = self.pairs
        if len(pairs) == self.window:
            old_champion, old_challenger = pairs[0]
            self.champion_sum -= old_champion
            self.challenger_sum -= old_challenger
            if old_champion > old_challenger:
                self.challenger_wins -= 1
            elif old_champion < old_challenger:
                self.champion_wins -= 1
        pairs.append((champion_loss, challenger_loss))
        self.champion_sum += champion_loss
        self.challenger_sum += challenger_loss
        if champion_loss > challenger_loss:
            self.challenger_wins += 1
        elif champion_loss < challenger_loss:
            self.champion_wins += 1
        self.seen = seen = self.seen + 1
        if seen < self.min_sample or (seen - self.min_sample) % self.every:
            return None
        verdict = self.evaluate()
        if verdict.action == "keep":
            if self.seen - self._last_keep < self.window and self._last_keep:
                return None
            self._last_keep = self.seen
        return verdict

    def evaluate(self) -> Verdict:
        """Test the current window and decide."""
        n = len(self.pairs)
        p_value, statistic = self._test()
        champion_mean = self.champion_sum / n
        challenger_mean = self.challenger_sum / n
        evidence = {
            "test": self.test_name,
            "sample_size": n,
            "window": self.window,
            "pairs_seen": self.seen,
            "champion_loss": round(champion_mean, 6),
            "challenger_loss": round(challenger_mean, 6),
            "statistic": statistic,
            "p_value": p_value,
            "alpha": self.alpha,
        }
        if challenger_mean < champion_mean and p_value < self.alpha:
            return Verdict("promote", evidence)
        if self.seen >= self.budget and challenger_mean >= champion_mean:
            return Verdict("drop", evidence)
        return Verdict("keep", evidence)

    def _test(self) -> tuple[float, float]:
        raise NotImplementedError


class McNemarComparator(PairedComparator):
    """Exact McNemar test on 0/1 losses (classification)."""

    test_name = "mcnemar-exact"

    def _test(self) -> tuple[float, float]:
        discordant = self.challenger_wins + self.champion_wins
        if discordant == 0:
            return 1.0, 0.0
        result = stats.binomtest(self.challenger_wins, discordant, 0.5)
        return float(result.pvalue), float(self.challenger_wins)


class PairedTTestComparator(PairedComparator):
    """Paired t-test on loss differences (regression)."""

    test_name = "paired-t"

    def _test(self) -> tuple[float, float]:
        diffs = [champion - challenger for champion, challenger in self.pairs]
        if len(diffs) < 2 or max(diffs) == min(diffs):
            return 1.0, 0.0
        result = stats.ttest_1samp(diffs, 0.0)
        statistic = float(result.statistic)
        p_value = float(result.pvalue)
        return (1.0 if math.isnan(p_value) else p_value), statistic


def make_comparator(task: str, **params: Any) -> PairedComparator:
    """The comparator for a task: McNemar for classification, paired t for regression."""
    cls = McNemarComparator if task == "classification" else PairedTTestComparator
    return cls(**params)
