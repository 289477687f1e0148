"""An arm against the control on live traffic: an anytime-valid two-sample test.

In an A/B test or a canary each request is served by one arm, chosen at random
by its unit with a known probability, and its feedback gives that arm a reward
(1 - loss: accuracy for classification, minus the absolute error for
regression). To compare an arm with the control, every request served by
either becomes one pseudo-outcome (inverse propensity weighting with a
predictable baseline)::

    phi_i = (r_i - c_i) / p_i        if the arm served it
    phi_i = -(r_i - c_i) / (1 - p_i) if the control did

where ``p_i`` is the arm's share of the two at assignment and ``c_i`` the mean
reward of the requests before it. Given the past, E[phi_i] = mu_arm -
mu_control whatever ``c_i`` is, so the asymptotic confidence sequence of
Waudby-Smith, Arnold, Wu and Ramdas for a mean (their randomized-experiment
construction, :class:`~stream_cd.evaluation.sequential.MeanDifferenceTest`)
bounds the difference of the arms at every time at once, and may be looked at
after every request; the baseline only removes the rewards' common level from
the variance (it makes the test as efficient as a difference of means).
Shares may change between requests (a canary's ramp, an arm dropped), since
``p_i`` is the share when the request was assigned.

>>> import random
>>> rng = random.Random(4)
>>> test = TwoSampleTest(alpha=0.05)
>>> for i in range(20_000):
...     in_arm = rng.random() < 0.5
...     reward = float(rng.random() < (0.85 if in_arm else 0.80))
...     if test.update(reward, in_arm, 0.5):
...         break
>>> test.decision, test.n
(1, 2924)
>>> e = test.evidence()
>>> round(e["difference"], 3), e["ci"][0] > 0, e["p_value"] <= 0.05
(0.051, True, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stream_cd.evaluation.sequential import MeanDifferenceTest, normal_mixture_log_lr, normal_mixture_radius

__all__ = ["TwoSampleTest", "first_decision", "holm"]


class TwoSampleTest:
    """Anytime-valid difference of an arm's mean reward and the control's (see the module docstring).

    ``decision``: +1 once the arm is shown better, -1 once shown worse (at level
    ``alpha``, both sides together), else 0.
    """

    def __init__(self, alpha: float = 0.05, t_star: float = 20_000, min_sample: int = 100) -> None:
        self.alpha = alpha
        self.test = MeanDifferenceTest(alpha=alpha, t_star=t_star, min_sample=min_sample)
        self.counts = [0, 0]  # requests of the control, of the arm
        self.sums = [0.0, 0.0]
        self.squares = [0.0, 0.0]

    @property
    def n(self) -> int:
        return self.test.n

    @property
    def decision(self) -> int:
        return self.test.decision

    @property
    def shown_worse(self) -> bool:
        """Whether the arm has been shown worse, even after it was first shown better: both
        crossings are events of the one two-sided confidence sequence, so its level holds."""
        return self.test.best_worse > -math.log(self.alpha)

    def update(self, reward: float, in_arm: bool, share: float) -> int:
        """One request of the arm (``in_arm``) or of the control; ``share``: the arm's
        probability of serving it, among the two."""
        counts, sums = self.counts, self.sums
        total = counts[0] + counts[1]
        baseline = (sums[0] + sums[1]) / total if total else 0.0
        phi = (reward - baseline) / share if in_arm else (baseline - reward) / (1.0 - share)
        side = 1 if in_arm else 0
        counts[side] += 1
        sums[side] += reward
        self.squares[side] += reward * reward
        return self.test.update(phi, 0.0)

    def lower_bound(self) -> float:
        """The confidence sequence's lower bound of arm minus control now."""
        return self.evidence()["ci"][0]

    def arm_means(self) -> list[dict[str, Any]]:
        """Each side's mean reward with its own confidence sequence (same level)."""
        out = []
        for n, s, q in zip(self.counts, self.sums, self.squares):
            mean = s / n if n else None
            sd = math.sqrt(max(q / n - mean * mean, 0.0)) if n else math.inf  # type: ignore[operator]
            radius = float(normal_mixture_radius(max(n, 1), sd, self.alpha, self.test.rho2)) if n > 1 else math.inf
            out.append({"n": n, "mean": mean, "ci": None if mean is None else [mean - radius, mean + radius]})
        return out

    def evidence(self) -> dict[str, Any]:
        e = self.test.evidence()
        control, arm = self.arm_means()
        return {"test": "ipw-asymptotic-cs", "requests": e["pairs"], "difference": e["mean_difference"],
                "ci": e["ci"], "p_value": e["p_value"], "p_value_worse": e["p_value_worse"],
                "alpha": self.alpha, "control": control, "arm": arm}


def first_decision(rewards: np.ndarray, in_arm: np.ndarray, share: float, alpha: float = 0.05,
                   t_star: float = 20_000, min_sample: int = 100) -> tuple[int, int]:
    """Where :class:`TwoSampleTest` fed ``rewards`` in order first decides, and which way:
    ``(index, +1 or -1)``, or ``(-1, 0)``. The same test on a whole path at once, with
    numpy, for simulations (a test checks it against :class:`TwoSampleTest`).

    >>> rng = np.random.default_rng(4)
    >>> in_arm = rng.random(20_000) < 0.5
    >>> rewards = (rng.random(20_000) < np.where(in_arm, 0.85, 0.80)).astype(float)
    >>> first_decision(rewards, in_arm, 0.5)
    (2394, 1)
    """
    rewards = np.asarray(rewards, dtype=float)
    n = np.arange(1, rewards.size + 1, dtype=float)
    before = np.concatenate(([0.0], np.cumsum(rewards)[:-1]))
    baseline = np.where(n > 1, before / np.maximum(n - 1, 1), 0.0)
    phi = np.where(in_arm, (rewards - baseline) / share, (baseline - rewards) / (1.0 - share))
    mean = np.cumsum(phi) / n
    m2 = np.cumsum(phi * phi) - n * mean * mean
    rho2 = MeanDifferenceTest(alpha, t_star, min_sample).rho2
    ok = (n >= min_sample) & (m2 > 1e-12 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = np.where(ok, normal_mixture_log_lr(n, mean, m2 / n, rho2), -np.inf)
    hits = np.flatnonzero(log_lr > -math.log(alpha))
    if not hits.size:
        return -1, 0
    return int(hits[0]), 1 if mean[hits[0]] > 0 else -1


def holm(p_values: dict[str, float], alpha: float) -> list[str]:
    """The hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``.

    With always-valid p-values (running minima) the family-wise error holds over all
    time: Holm is closed testing with Bonferroni, and each Bonferroni bound holds
    uniformly in time (Holm 1979; Johari, Pekelis and Walsh 2022, section 5).

    >>> holm({"b": 0.01, "c": 0.04, "d": 0.30}, alpha=0.05)
    ['b']
    >>> holm({"b": 0.01, "c": 0.02}, alpha=0.05)
    ['b', 'c']
    """
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    m = len(ordered)
    rejected = []
    for j, (name, p) in enumerate(ordered):
        if p > alpha / (m - j):
            break
        rejected.append(name)
    return rejected
