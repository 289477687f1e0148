"""Interleaving experiments: an anytime-valid preference test on wins against losses.

Every ranking request of the key is served a team-draft interleaving of the
champion's ranking and the arm's (:mod:`stream_cd.serving.interleave`); its
clicks credit the team that placed each clicked item, and the impression is a
win for the arm (more of its items clicked), a loss (fewer), a tie (as many,
at least one each) or an impression without clicks. Ties and impressions
without clicks are counted and reported but carry no information about which
ranker is better, so the test runs on the decided impressions only.

:class:`PreferenceTest`: the null is that each side wins half of the decided
impressions, P(win | decided, past) = 1/2 at every step. It is the mixture
sequential probability ratio test of
:class:`~stream_cd.evaluation.sequential.DiscordantPairsTest` (Robbins 1970; a
Beta(a, a) mixture over the win probability, one half-line each side), run on
the wins and losses from the experiment's start, both sides at ``alpha / 2``:
by Ville's inequality the probability that either side *ever* crosses under
the null is at most ``alpha``, however often it is looked at and although both
rankers keep learning from the interleaved clicks (the null is asked to hold
given the past; the statistic is then a nonnegative supermartingale). The
two-sided always-valid p-value (Johari, Pekelis and Walsh) is ``min(1, 2 min(p_better,
p_worse))``, the p-values of each side's running maximum.

The prior: the default ``a`` is 30 (prior sd of the win rate 0.064), by
``bench/interleave.py --tune``: impressions to a decision (medians of 50 runs)
on the default simulated population, one query per user, a ranker that knows
the query-item match against one that knows a quarter of it or half of it, at
alpha 0.05; and false winners of 200 A/A runs (equally good rankers with
independent errors) by 20,000 impressions::

       a    worse 0.25   worse 0.5   A/A false winners
       1      354         3,572      8 (4.0 %)
       3      296         2,780      9 (4.5 %)
      10      264         2,584      7 (3.5 %)
      30      340         2,072      5 (2.5 %)   <- default
     100      444         2,272      2 (1.0 %)
     300      596         2,954      3 (1.5 %)

A narrow prior (a = 100, the paired shadow test's, tuned for a discordant win
rate of 0.53) is slow on lopsided wins, a wide one on small effects; a = 30 is
near the best on both. All stay under Ville's bound of alpha.

Verdicts: ``promote`` when the arm is shown better (through the forgetting
guard, by the policy); ``stop`` with the winner ``control`` and the reason "the
champion is better" when the champion is, which ends the experiment keeping it;
``stop`` with "no significant difference" after ``max_sample`` impressions;
``keep`` with the status every ``report_every`` impressions.

>>> from stream_cd.evaluation.definition import ExperimentDefinition
>>> d = ExperimentDefinition.from_mapping({"name": "il", "kind": "interleave", "arms": [{"name": "b", "spec": "logreg"}]})
>>> exp = InterleaveExperiment(d)
>>> import random
>>> rng = random.Random(3)
>>> verdict = None
>>> while verdict is None:
...     verdict = exp.credit(int(rng.random() < 0.3), int(rng.random() < 0.45))
>>> verdict.action, verdict.evidence["winner"], verdict.evidence["wins"], verdict.evidence["losses"]
('promote', 'b', 33, 7)
>>> verdict.evidence["impressions"], verdict.evidence["ties"], verdict.evidence["no_clicks"], round(verdict.evidence["p_value"], 4)
(87, 9, 38, 0.041)
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from stream_cd.evaluation.definition import CONTROL, ExperimentDefinition
from stream_cd.evaluation.paired import Verdict
from stream_cd.evaluation.sequential import DiscordantPairsTest, crossed, crossing_table

__all__ = ["PreferenceTest", "InterleaveExperiment", "first_preference", "INTERLEAVE_A", "CHAMPION_WINS"]

INTERLEAVE_A = 30.0
CHAMPION_WINS = "the champion is better"


class PreferenceTest:
    """Two-sided anytime-valid test of wins against losses at ``alpha`` (see the module docstring).

    ``decision``: +1 once the challenger is shown to win more than half of the decided
    impressions, -1 once shown to win fewer, else 0; the first crossing stands.

    >>> import itertools
    >>> test = PreferenceTest(alpha=0.05)
    >>> for outcome in itertools.cycle([1, 1, -1]):   # the challenger wins two of three
    ...     if test.update(outcome):
    ...         break
    >>> test.decision, test.wins, test.losses, round(test.p_value(), 4)
    (1, 64, 31, 0.0459)
    """

    test_name = "interleaving-mixture-sprt"

    def __init__(self, alpha: float = 0.05, a: float = INTERLEAVE_A) -> None:
        self.alpha = alpha
        self.test = DiscordantPairsTest(alpha / 2, a)

    @property
    def wins(self) -> int:
        return self.test.wins

    @property
    def losses(self) -> int:
        return self.test.losses

    @property
    def decision(self) -> int:
        return self.test.decision

    def update(self, outcome: int) -> int:
        """One decided impression: +1 a win of the challenger, -1 a loss."""
        return self.test.update(1.0, 0.0) if outcome > 0 else self.test.update(0.0, 1.0)

    def p_values(self) -> tuple[float, float]:
        """Always-valid p-values of each side alone: (challenger better, challenger worse)."""
        return min(1.0, math.exp(-self.test.best_better)), min(1.0, math.exp(-self.test.best_worse))

    def p_value(self) -> float:
        """The two-sided always-valid p-value."""
        return min(1.0, 2.0 * min(self.p_values()))


class InterleaveExperiment:
    """An interleaving experiment of one model key (see the module docstring)."""

    kind = "interleave"

    def __init__(self, definition: ExperimentDefinition, report_every: int = 5000) -> None:
        self.definition = d = definition
        self.name = d.name
        self.arm = d.arms[0][0]
        self.report_every = report_every
        self.test = PreferenceTest(d.alpha)
        self.impressions = self.ties = self.no_clicks = 0
        self.clicks = [0, 0]  # credited to the control (the champion), to the arm
        self.state = "running"

    # the interface of A/B tests and canaries: every request is interleaved, no unit is assigned
    def assign(self, unit: str) -> str:
        return CONTROL

    def enter(self, unit: str, arm: str) -> tuple[bool, Verdict | None]:
        return True, None

    def observe(self, arm: str, reward: float, epoch: int = 0) -> Verdict | None:
        return None  # an interleaving experiment is judged on credited clicks only (:meth:`credit`)

    def credit(self, control_clicks: int, arm_clicks: int) -> Verdict | None:
        """One impression's credited clicks; a verdict when one is due."""
        if self.state != "running":
            return None
        self.impressions += 1
        self.clicks[0] += control_clicks
        self.clicks[1] += arm_clicks
        if control_clicks == arm_clicks:
            if control_clicks:
                self.ties += 1
            else:
                self.no_clicks += 1
        else:
            decision = self.test.update(1 if arm_clicks > control_clicks else -1)
            if decision > 0:
                self.state = "done"
                return Verdict("promote", {"winner": self.arm, **self.status()})
            if decision < 0:
                self.state = "done"
                return Verdict("stop", {"winner": CONTROL, "reason": CHAMPION_WINS, **self.status()})
        if self.impressions >= self.definition.max_sample:
            self.state = "done"
            return Verdict("stop", {"reason": "no significant difference", **self.status()})
        if self.impressions % self.report_every == 0:
            return Verdict("keep", self.status())
        return None

    def traffic(self) -> dict[str, float]:
        """Every impression shows both rankers: each serves all units."""
        return {CONTROL: 1.0, self.arm: 1.0}

    def status(self) -> dict[str, Any]:
        """Impressions, wins, losses, ties, impressions without clicks, credited clicks, the
        two-sided always-valid p-value and each side's, the state."""
        test = self.test
        better, worse = test.p_values()
        n = max(self.impressions, 1)
        decided = test.wins + test.losses
        return {"experiment": self.name, "kind": self.kind, "state": self.state, "traffic": self.traffic(),
                "impressions": self.impressions, "wins": test.wins, "losses": test.losses, "ties": self.ties,
                "no_clicks": self.no_clicks, "win_rate": test.wins / decided if decided else None,
                "p_value": test.p_value(), "alpha": test.alpha, "test": test.test_name,
                "prior": {"family": "beta", "a": test.test.a},
                "arms": {CONTROL: {"requests": self.impressions, "metric": self.clicks[0] / n,
                                   "credited_clicks": self.clicks[0]},
                         self.arm: {"requests": self.impressions, "metric": self.clicks[1] / n,
                                    "credited_clicks": self.clicks[1], "p_value": better, "p_value_worse": worse,
                                    "verdict": {1: "better", -1: "worse", 0: None}[test.decision]}}}


@lru_cache(maxsize=16)
def _table(alpha: float, a: float, max_count: int) -> np.ndarray:
    return crossing_table(alpha, a, max_count)


def first_preference(outcomes: np.ndarray, alpha: float = 0.05, a: float = INTERLEAVE_A) -> tuple[int, int]:
    """Where :class:`PreferenceTest` fed the impressions' ``outcomes`` in order (+1 a win of the
    challenger, -1 a loss, 0 a tie or no click) first decides, and which way: ``(index, +1 or
    -1)``, or ``(-1, 0)``. For simulations: the crossings of
    :func:`~stream_cd.evaluation.sequential.crossing_table` on the whole path at once (a test
    checks it against :class:`PreferenceTest`).

    >>> first_preference(np.array([1, 1, -1, 0] * 60))   # index 125: the 64th win
    (125, 1)
    """
    outcomes = np.asarray(outcomes)
    wins, losses = np.cumsum(outcomes > 0), np.cumsum(outcomes < 0)
    top = int(max(wins[-1], losses[-1])) if outcomes.size else 0
    table = _table(alpha / 2, a, 1 << max(10, top.bit_length()))
    hit = crossed(wins, losses, table) | crossed(losses, wins, table)
    hit &= outcomes != 0  # a crossing happens at a decided impression
    where = np.flatnonzero(hit)
    if not where.size:
        return -1, 0
    i = int(where[0])
    return i, 1 if wins[i] > losses[i] else -1
