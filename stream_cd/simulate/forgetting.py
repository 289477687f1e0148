"""The forgetting guard's test on simulated reference samples: its false-hold rate and power.

One run is one promotion: a reference sample of ``size`` events, the champion's
and the candidate's loss on each, and the guard's one-sided paired test of
:func:`stream_cd.evaluation.forgetting.check_forgetting` at ``alpha``.

The two models err together, as real models do. Each reference event has a
difficulty ``d`` drawn from a Beta distribution of mean ``error`` (0.2) and
concentration ``kappa`` (1): both models err on it with probability ``d``,
independently given ``d``, so their errors are correlated (``1 / (kappa + 1)``,
0.5) and they agree on 84 % of events. A share ``old_share`` (0.3) of the events
comes from an older regime, on which a candidate that has *forgotten* errs with
probability ``d + s (1 - d)``, ``s = worsening / (1 - error)``: ``worsening``
(0.10) more in error rate there, ``old_share * worsening`` (0.03) overall.
Regression (:class:`RegressionScenario`): residuals ``z + e`` of a common
normal term ``z`` (sd 1) and each model's own ``e`` (sd 0.5), the loss their
absolute value; a candidate that has forgotten carries a bias on old events, set
so that its mean absolute error there is ``worsening`` (10 %) above the champion's.

Events of a sample are independent, so a classification run's counts of
(candidate worse, candidate better) pairs are multinomial with the cell
probabilities of one event (:func:`discordant_cells`); the exact McNemar test
conditions on their sum, so :func:`exact_hold_probability` gives the hold
probability with no sampling error. Regression runs draw every event and run
``scipy.stats.wilcoxon`` along the runs' axis.

:func:`guard_run` is one run through the shipped code: a history fed to
:class:`~stream_cd.evaluation.forgetting.ReferenceSample`, two toy models whose
errors on each event are drawn as above, and ``check_forgetting`` itself.

>>> cells = discordant_cells(Scenario())
>>> [round(c, 3) for c in cells]          # P(candidate worse), P(candidate better)
[0.107, 0.077]
>>> round(exact_hold_probability(Scenario(worsening=0.0), 2000, 0.01), 4) <= 0.01
True
>>> round(exact_hold_probability(Scenario(), 2000, 0.01), 3)
0.776
>>> guard_run(Scenario(worsening=0.5), size=200, alpha=0.01, seed=1)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from stream_cd.evaluation.forgetting import ReferenceSample, check_forgetting

__all__ = ["Scenario", "RegressionScenario", "discordant_cells", "exact_hold_probability",
           "classification_holds", "regression_holds", "smallest_detectable", "guard_run"]


@dataclass(frozen=True)
class Scenario:
    """Classification: both err ``error`` on average; the candidate ``worsening`` more on old events."""

    error: float = 0.2
    kappa: float = 1.0
    old_share: float = 0.3
    worsening: float = 0.10

    @property
    def overall(self) -> float:
        """How much worse the candidate's error rate is over the whole sample."""
        return self.old_share * self.worsening


@dataclass(frozen=True)
class RegressionScenario:
    """Regression: common residual sd ``common``, own sd ``own``; the candidate's MAE on old events
    ``worsening`` (a fraction) above the champion's."""

    common: float = 1.0
    own: float = 0.5
    old_share: float = 0.3
    worsening: float = 0.10

    @property
    def overall(self) -> float:
        return self.old_share * self.worsening

    def bias(self) -> float:
        """The candidate's bias on old events that makes its MAE there ``1 + worsening`` times the champion's."""
        s = math.hypot(self.common, self.own)
        folded = lambda mu: s * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s)) + mu * (1 - 2 * stats.norm.cdf(-mu / s))  # noqa: E731
        target = (1 + self.worsening) * folded(0.0)
        return 0.0 if self.worsening <= 0 else float(optimize.brentq(lambda mu: folded(mu) - target, 0.0, 10 * s))


def discordant_cells(sc: Scenario) -> tuple[float, float]:
    """P(the candidate errs and the champion does not), P(the champion errs and the candidate does not)."""
    m, k = sc.error, sc.kappa
    both_sides = m - (m * (1 - m) / (k + 1) + m * m)        # E[d (1 - d)], one discordant cell when equal
    s = sc.worsening / (1 - m)
    old_worse, old_better = s * (1 - m) + (1 - s) * both_sides, (1 - s) * both_sides
    share = sc.old_share
    return (share * old_worse + (1 - share) * both_sides, share * old_better + (1 - share) * both_sides)


def _critical(discordant: np.ndarray, alpha: float) -> np.ndarray:
    """The fewest "candidate worse" pairs out of ``discordant`` that the exact one-sided test holds on
    (``discordant + 1`` when none does): the successor of the binomial's upper ``alpha`` quantile."""
    return stats.binom.isf(alpha, discordant, 0.5) + 1


def exact_hold_probability(sc: Scenario, size: int, alpha: float) -> float:
    """The probability that the guard holds, summed exactly over the discordant count."""
    worse, better = discordant_cells(sc)
    d = np.arange(size + 1)
    weights = stats.binom.pmf(d, size, worse + better)
    theta = worse / (worse + better)
    return float(np.sum(weights * stats.binom.sf(_critical(d, alpha) - 1, d, theta)))


def classification_holds(sc: Scenario, size: int, alpha: float, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Whether each of ``runs`` simulated promotions is held (exact McNemar p-value below ``alpha``)."""
    worse, better = discordant_cells(sc)
    counts = rng.multinomial(size, [worse, better, 1 - worse - better], size=runs)
    w, d = counts[:, 0], counts[:, 0] + counts[:, 1]
    p = np.where(d > 0, stats.binom.sf(w - 1, d, 0.5), 1.0)   # binomtest(w, d, 0.5, "greater").pvalue
    return p < alpha


def _residuals(sc: RegressionScenario, shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    common = sc.common * rng.standard_normal(shape)
    old = rng.random(shape) < sc.old_share
    champion = common + sc.own * rng.standard_normal(shape)
    candidate = common + sc.own * rng.standard_normal(shape) + np.where(old, sc.bias(), 0.0)
    return champion, candidate


def regression_holds(sc: RegressionScenario, size: int, alpha: float, runs: int, rng: np.random.Generator,
                     chunk: int = 2_000_000) -> np.ndarray:
    """Whether each simulated promotion is held (Wilcoxon signed-rank on the loss differences)."""
    out, per = [], max(1, chunk // size)
    for r0 in range(0, runs, per):
        champion, candidate = _residuals(sc, (min(per, runs - r0), size), rng)
        out.append(stats.wilcoxon(np.abs(candidate) - np.abs(champion), axis=1, alternative="greater").pvalue < alpha)
    return np.concatenate(out)


def smallest_detectable(power_of: Any, power: float = 0.8, high: float = 0.5) -> float:
    """The smallest ``worsening`` on old events at which ``power_of(worsening)`` reaches ``power``."""
    return float(optimize.brentq(lambda w: power_of(w) - power, 1e-6, high, xtol=1e-4))


class _Toy:
    """A model whose answer on event ``x["i"]`` is fixed in advance: ``wrong[i]`` (classification)
    or the label minus ``residual[i]`` (regression)."""

    def __init__(self, labels: np.ndarray, off: np.ndarray, task: str) -> None:
        self.answers = (labels != off) if task == "classification" else labels - off

    def predict_one(self, x: dict) -> Any:
        answer = self.answers[x["i"]]
        return bool(answer) if self.answers.dtype == bool else float(answer)


def guard_run(sc: Scenario | RegressionScenario, size: int, alpha: float, seed: int, history: int | None = None) -> bool:
    """One promotion through the shipped code: ``history`` events (the first ``old_share`` of them from
    the old regime) fed to a ``ReferenceSample(size)``, two toy models, ``check_forgetting``'s verdict."""
    rng = np.random.default_rng([seed, 7])
    n = history or 3 * size
    old = np.arange(n) < round(sc.old_share * n)
    if isinstance(sc, Scenario):
        task, labels = "classification", rng.random(n) < 0.5
        d = rng.beta(sc.error * sc.kappa, (1 - sc.error) * sc.kappa, n)
        q = np.where(old, d + sc.worsening / (1 - sc.error) * (1 - d), d)
        champion_off, candidate_off = rng.random(n) < d, rng.random(n) < q
    else:
        task, labels = "regression", 10.0 * rng.standard_normal(n)
        common = sc.common * rng.standard_normal(n)
        champion_off = common + sc.own * rng.standard_normal(n)
        candidate_off = common + sc.own * rng.standard_normal(n) + np.where(old, sc.bias(), 0.0)
    sample = ReferenceSample(size, seed=f"sim:{seed}")
    for i, y in enumerate(labels.tolist()):
        sample.add({"i": i}, y)
    forgot, _ = check_forgetting(task, _Toy(labels, champion_off, task), _Toy(labels, candidate_off, task), sample, alpha)
    return forgot
