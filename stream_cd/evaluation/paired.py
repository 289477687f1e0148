"""The shadow experiment: a challenger judged against the champion on paired outcomes.

Champion and challenger both score every request; when its label comes, each
is scored on what it output at request time, so their losses come in pairs.
From the challenger's birth, an anytime-valid sequential test runs on those
pairs (:mod:`stream_cd.evaluation.sequential`): a mixture SPRT on the
discordant pairs for classification, a confidence sequence on the loss
differences for regression. The probability of *ever* promoting a challenger
that is not better stays at most ``alpha``, however long the stream runs and
however often the test looks, also while both models keep learning: the null
"the challenger is not better" is asked to hold at every step given the past,
and the test statistic is then a nonnegative supermartingale (Ville's
inequality bounds its crossing probability over all time).

Verdicts: ``promote`` once the challenger is shown better and at least
``min_sample`` pairs are in; ``drop`` once it is shown worse, or when
``budget`` pairs have passed without a promotion (futility: it is not worth
scoring any more); ``keep``, with the evidence so far, every ``report_every``
pairs.

>>> import random
>>> rng = random.Random(1)
>>> exp = ShadowExperiment("classification", alpha=0.01, min_sample=200, budget=50_000, report_every=1_000)
>>> verdicts = []
>>> for i in range(5_000):
...     verdict = exp.update(float(rng.random() < 0.30), float(rng.random() < 0.15))
...     if verdict:
...         verdicts.append((i + 1, verdict.action))
...         break
>>> verdicts
[(297, 'promote')]
>>> exp.evidence()["p_value"] < 0.01
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_cd.evaluation.sequential import DiscordantPairsTest, MeanDifferenceTest

__all__ = ["Verdict", "ShadowExperiment", "paired_test"]


@dataclass(frozen=True)
class Verdict:
    """What an experiment concluded, with the evidence for it."""

    action: str  # promote | keep | drop
    evidence: dict[str, Any] = field(default_factory=dict)


def paired_test(task: str, alpha: float) -> DiscordantPairsTest | MeanDifferenceTest:
    """The anytime-valid paired test of a task."""
    return DiscordantPairsTest(alpha=alpha) if task == "classification" else MeanDifferenceTest(alpha=alpha)


class ShadowExperiment:
    """The sequential paired test of one challenger, from its birth."""

    name = "shadow"

    def __init__(self, task: str, alpha: float = 0.01, min_sample: int = 1000, budget: int | None = 50_000,
                 report_every: int = 5000) -> None:
        self.alpha = alpha
        self.min_sample = min_sample
        self.budget = budget
        self.report_every = report_every
        self.test = paired_test(task, alpha)
        self.shown = 0  # +1 once shown better, -1 once shown worse: a crossing stands for good

    @property
    def pairs(self) -> int:
        return self.test.n

    def update(self, champion_loss: float, challenger_loss: float) -> Verdict | None:
        """Add one pair; return a verdict when one is due."""
        sign = self.test.update(champion_loss, challenger_loss)
        if sign and not self.shown:
            self.shown = sign
        n = self.test.n
        if n < self.min_sample:
            return None
        if self.shown:
            return Verdict("promote" if self.shown > 0 else "drop", self.evidence("better" if self.shown > 0 else "worse"))
        if self.budget is not None and n >= self.budget:
            return Verdict("drop", self.evidence("budget"))
        if n % self.report_every == 0:
            return Verdict("keep", self.evidence())
        return None

    def evidence(self, reason: str | None = None) -> dict[str, Any]:
        """The test's evidence so far, with what the experiment makes of it."""
        evidence = {**self.test.evidence(), "min_sample": self.min_sample, "budget": self.budget}
        if reason is not None:
            evidence["reason"] = reason
        return evidence
