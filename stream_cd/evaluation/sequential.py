"""Anytime-valid paired tests of a challenger against the champion.

Both models score every labeled event, so losses come in pairs. The models keep
learning, so the pairs are not iid: each test is valid when its null holds *at
every step given the past*, because its statistic is then a nonnegative
supermartingale starting at 1 and, by Ville's inequality, P(ever >= 1/alpha) <=
alpha. It may be looked at after every pair, for as long as the stream runs.

Classification, :class:`DiscordantPairsTest`. Only discordant pairs carry
information: a win (challenger right, champion wrong, X = 1) or a loss (X = 0).
H0 "challenger not better": P(X = 1 | past) = p_t <= 1/2 at every discordant
pair. For q >= 1/2, E[(2q)^X (2(1-q))^(1-X) | past] = 2(1-q) + 2 p_t (2q-1) <= 1,
so each likelihood ratio against q = 1/2, and any mixture of them over q in
[1/2, 1], is a supermartingale under every such p_t (Robbins 1970). With a
Beta(a, a) prior truncated to [1/2, 1] (mass 1/2), after W wins and L losses::

    log Lambda_better = (W+L) log 2 + betaln(a+W, a+L) + log I_{1/2}(a+L, a+W)
                        - betaln(a, a) + log 2

(I_x the regularised incomplete beta); "worse" mirrors it: Lambda_worse(W, L) =
Lambda_better(L, W). Each side rejects at Lambda >= 1/alpha, so a false
promotion has probability <= alpha, and p = min(1, 1 / max_k Lambda_k) is an
always-valid p-value (Johari, Pekelis and Walsh): P(ever p <= alpha) <= alpha.
Lambda grows with W, shrinks with L and never grows along W = L + D for a fixed
lead D (the integrand gains 4q(1-q) <= 1 per step), so it need only be computed
when one side's lead reaches a new high since its last evaluation: decisions
and p-values are exactly those of evaluating every pair. :func:`crossing_table`
turns the same monotonicity into a boundary for vectorised simulations.

Prior, by simulation (``bench/sequential.py --tune --runs 1000``: 1,000 runs
each, looked at after every pair; champion errs 20 %, challenger 18 %,
independently; alpha 0.01; A/A both at 20 %)::

       a   false promotion       power within    median events
           (A/A, 100,000 events) 20,000 events   to promotion
       1   0.004                 0.923           9,759
      10   0.003                 0.957           7,443
      30   0.005                 0.970           6,800
     100   0.005                 0.976           6,735   <- default
     300   0.004                 0.978           7,498
    1000   0.004                 0.967           9,862

A wide prior (small a) spends its evidence on large effects, a narrow one
(prior sd 1 / (2 sqrt(2a + 1)), 0.035 at a = 100) on effects near the target's
discordant win rate of 0.532; the A/A rates move little (over 10,000 runs the
default crosses in 0.83 % of runs by 100,000 events; Ville bounds it at 1 %
forever). A fixed-horizon test needs 7,717 events for 80 % power.

Its ``ci`` is a time-uniform, exact (nonasymptotic) confidence sequence of level
1 - alpha for the running average accuracy difference (challenger minus
champion) given the past, mean of d_i = champion_loss - challenger_loss in
[-1, 1]: empirical Bernstein (Howard, Ramdas, McAuliffe and Sekhon 2021,
Thm. 4, after Fan, Grama and Liu's (2015) inequality exp(l x - psi(l) x^2) <=
1 + l x for x >= -1, psi(l) = -log(1-l) - l) with predictable centre 0, so the
variance process is the discordant count, mixed over a geometric grid of 40
values of l, alpha/2 per side. It is reported, not decided on: being two-sided
and variance-agnostic it may still hold 0 when the one-sided test has crossed.

Regression, :class:`MeanDifferenceTest`: the asymptotic confidence sequence of
Waudby-Smith, Arnold, Wu and Ramdas (2024) for the mean of d_i, mean +/-
sd * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) log(sqrt(t rho^2 + 1) / alpha)), rho
tuned for an intrinsic time ``t_star``, i.e. the Gaussian-mixture ratio
Lambda_t = exp(rho^2 t^2 mean^2 / (2 var (1 + t rho^2))) / sqrt(1 + t rho^2)
with plug-in variance crossing 1/alpha; p = min(1, 1 / max Lambda_t) over the
times the mean is above 0 ("better", below for "worse"). Asymptotic: valid as t
grows (also for martingale differences whose variance settles), so it decides
only after ``min_sample`` pairs; both sides together are at alpha.

In both, ``update`` returns the first crossing's side (+1 better, -1 worse)
from then on, 0 before. A concordant pair costs a counter; an A/A stream of
1,000,000 events computes Lambda on 621 of its 320,165 discordant pairs.

References: Robbins (1970), Statistical methods related to the law of the
iterated logarithm; Johari, Pekelis, Walsh (2017/2022), Always valid inference:
continuous monitoring of A/B tests; Howard, Ramdas, McAuliffe, Sekhon (2021),
Time-uniform, nonparametric, nonasymptotic confidence sequences; Waudby-Smith,
Arnold, Wu, Ramdas (2021/2024), Time-uniform central limit theory and
asymptotic confidence sequences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import betainc, betaln

__all__ = ["DEFAULT_A", "DiscordantPairsTest", "MeanDifferenceTest", "log_lr_better", "log_lr_worse", "first_crossing",
           "crossing_table", "crossed", "bernstein_radius", "normal_mixture_rho2", "normal_mixture_log_lr",
           "normal_mixture_radius"]

DEFAULT_A = 100.0
LOG2 = math.log(2.0)
_LAMBDAS = 0.75 * 2.0 ** (-0.5 * np.arange(40))  # the empirical-Bernstein mixture grid
_PSI = -np.log1p(-_LAMBDAS) - _LAMBDAS


def log_lr_better(wins: ArrayLike, losses: ArrayLike, a: float = DEFAULT_A) -> Any:
    """log Lambda_better after ``wins`` and ``losses`` discordant pairs (scalars or arrays).

    >>> round(float(log_lr_better(60, 40)), 6), float(log_lr_better(0, 0))
    (1.027356, 0.0)
    """
    wins, losses = np.asarray(wins, dtype=float), np.asarray(losses, dtype=float)
    with np.errstate(divide="ignore"):
        tail = np.log(betainc(a + losses, a + wins, 0.5))
    return (wins + losses + 1.0) * LOG2 + betaln(a + wins, a + losses) + tail - betaln(a, a)


def log_lr_worse(wins: ArrayLike, losses: ArrayLike, a: float = DEFAULT_A) -> Any:
    """log Lambda_worse, the mirror image: ``log_lr_better(losses, wins, a)``."""
    return log_lr_better(losses, wins, a)


def first_crossing(wins: ArrayLike, losses: ArrayLike, alpha: float, a: float = DEFAULT_A) -> int:
    """Index of the first step of a path of cumulative counts with Lambda_better >= 1/alpha, or -1.

    Evaluates every step (the reference); the worse side is ``first_crossing(losses, wins, ...)``.
    """
    hits = np.flatnonzero(log_lr_better(wins, losses, a) >= -math.log(alpha))
    return int(hits[0]) if hits.size else -1


def crossing_table(alpha: float, a: float = DEFAULT_A, max_count: int = 100_000) -> np.ndarray:
    """``table[D]``: the most losses at which a lead of D wins still gives Lambda_better >= 1/alpha.

    -1 where that lead never crosses. Valid for losses <= ``max_count`` (= ``table[-1]``): leads
    beyond the table always cross there. Found by bisection on the monotonicity in the module
    docstring, with :func:`log_lr_better` itself.
    """
    threshold = -math.log(alpha)
    d_max = 1
    while log_lr_better(max_count + d_max, max_count, a) < threshold:
        d_max *= 2
    lead = np.arange(d_max + 1, dtype=float)
    lo = np.full(lead.shape, -1.0)  # crosses (by convention at -1)
    hi = np.full(lead.shape, max_count + 1.0)  # does not cross
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2)
        ok = log_lr_better(mid + lead, mid, a) >= threshold
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lo.astype(np.int64)


def crossed(wins: np.ndarray, losses: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Where Lambda_better(wins, losses) >= 1/alpha, elementwise, by ``table`` (worse: swap)."""
    if losses.size and losses.max() > table[-1]:
        raise ValueError(f"the table holds up to {table[-1]} losses")
    return losses <= table[np.clip(wins - losses, 0, table.size - 1)]


def bernstein_radius(variance: float, alpha: float) -> float:
    """u with P(exists t: sum_i (d_i - E[d_i | past]) >= u(V_t)) <= alpha for d_i >= -1, V_t = sum d_i^2.

    >>> round(bernstein_radius(1000.0, 0.005), 3)
    135.071
    """
    target, offset = math.log(_LAMBDAS.size / alpha), _PSI * variance

    def excess(s: float) -> float:  # log of the mixture at S_t = s, less log(1/alpha); scipy's logsumexp is slow
        x = _LAMBDAS * s - offset
        return float(x.max() + math.log(np.exp(x - x.max()).sum()) - target)

    return float(brentq(excess, 0.0, (target + offset[0]) / _LAMBDAS[0], xtol=1e-9))


class DiscordantPairsTest:
    """Mixture SPRT on discordant pairs of 0/1 losses, each side at ``alpha``.

    Parameters
    ----------
    alpha : float
        Level of each side: P(ever shown better | challenger never better) <= alpha.
    a : float
        Beta(a, a) prior of the win probability, truncated to each side of 1/2.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> test = DiscordantPairsTest(alpha=0.01)
    >>> while not test.update(float(rng.random() < 0.20), float(rng.random() < 0.15)):
    ...     pass
    >>> test.decision, test.n, test.wins, test.losses
    (1, 1217, 208, 138)
    >>> evidence = test.evidence()
    >>> round(evidence["p_value"], 5), [round(x, 4) for x in evidence["ci"]]
    (0.00913, [-0.0099, 0.1249])
    """

    test_name = "discordant-mixture-sprt"

    def __init__(self, alpha: float = 0.01, a: float = DEFAULT_A) -> None:
        self.alpha = alpha
        self.a = a
        self.n = self.wins = self.losses = 0
        self.decision = 0  # +1 shown better, -1 shown worse: the first crossing stands
        self.best_better = self.best_worse = 0.0  # running max of log Lambda (log 1 at the start)
        self._next_better = self._next_worse = 1  # leads below these cannot make a new max

    def update(self, champion_loss: float, challenger_loss: float) -> int:
        """Add one pair; return +1 once shown better, -1 once shown worse, else 0."""
        self.n += 1
        if champion_loss == challenger_loss:
            return self.decision
        if champion_loss > challenger_loss:
            self.wins += 1
            if self.wins - self.losses >= self._next_better:
                self._look(1)
        else:
            self.losses += 1
            if self.losses - self.wins >= self._next_worse:
                self._look(-1)
        return self.decision

    def _look(self, side: int) -> None:
        wins, losses = (self.wins, self.losses) if side > 0 else (self.losses, self.wins)
        value = float(log_lr_better(wins, losses, self.a))
        if side > 0:
            self._next_better, self.best_better = wins - losses + 1, max(self.best_better, value)
        else:
            self._next_worse, self.best_worse = wins - losses + 1, max(self.best_worse, value)
        if not self.decision and value >= -math.log(self.alpha):
            self.decision = side

    def evidence(self) -> dict[str, Any]:
        """Counts, always-valid p-values and the confidence sequence of the accuracy difference."""
        discordant, lead = self.wins + self.losses, self.wins - self.losses
        radius = bernstein_radius(float(discordant), self.alpha / 2)
        ci = [max(-1.0, (lead - radius) / max(self.n, 1)), min(1.0, (lead + radius) / max(self.n, 1))]
        return {
            "test": self.test_name, "pairs": self.n, "discordant": discordant,
            "challenger_wins": self.wins, "champion_wins": self.losses,
            "p_value": min(1.0, math.exp(-self.best_better)),
            "p_value_worse": min(1.0, math.exp(-self.best_worse)),
            "ci": ci, "alpha": self.alpha, "prior": {"family": "beta", "a": self.a}, "decision": self.decision,
        }


def normal_mixture_rho2(t_star: float, alpha: float) -> float:
    """rho^2 that makes the normal-mixture boundary tightest at intrinsic time ``t_star``."""
    return (-2.0 * math.log(alpha) + math.log(1.0 - 2.0 * math.log(alpha))) / t_star


def normal_mixture_log_lr(t: ArrayLike, mean: ArrayLike, var: ArrayLike, rho2: float) -> Any:
    """log of the Gaussian-mixture ratio for mean 0 after t pairs (scalars or arrays)."""
    t, mean, var = np.asarray(t, dtype=float), np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    return rho2 * t * t * mean * mean / (2.0 * var * (1.0 + t * rho2)) - 0.5 * np.log1p(t * rho2)


def normal_mixture_radius(t: ArrayLike, sd: ArrayLike, alpha: float, rho2: float) -> Any:
    """Half-width of the asymptotic confidence sequence (Waudby-Smith et al.)."""
    t = np.asarray(t, dtype=float)
    return sd * np.sqrt(2.0 * (t * rho2 + 1.0) / (t * t * rho2) * np.log(np.sqrt(t * rho2 + 1.0) / alpha))


class MeanDifferenceTest:
    """Asymptotic confidence sequence for the mean loss difference (regression).

    Parameters
    ----------
    alpha : float
        Level of the two-sided confidence sequence (both decisions together).
    t_star : float
        Intrinsic time, in pairs, where the boundary is tightest.
    min_sample : int
        Pairs before it may decide: the sequence is asymptotic.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> test = MeanDifferenceTest(alpha=0.05)
    >>> while not test.update(abs(rng.normal()), abs(rng.normal(scale=0.8))):
    ...     pass
    >>> test.decision, test.n
    (1, 529)
    >>> evidence = test.evidence()
    >>> round(evidence["p_value"], 5), [round(x, 4) for x in evidence["ci"]]
    (0.05, [0.0, 0.3205])
    """

    test_name = "asymptotic-cs"

    def __init__(self, alpha: float = 0.01, t_star: float = 10_000, min_sample: int = 30) -> None:
        self.alpha = alpha
        self.t_star = t_star
        self.min_sample = min_sample
        self.rho2 = normal_mixture_rho2(t_star, alpha)
        self.n = 0
        self.mean = self.m2 = 0.0  # Welford: running mean and sum of squared deviations
        self.decision = 0
        self.best_better = self.best_worse = 0.0  # running max of log Lambda, on each side of 0
        self._penalty = 0.0  # a lower bound of 0.5 log(1 + t rho^2), which grows with t

    def update(self, champion_loss: float, challenger_loss: float) -> int:
        """Add one pair; return +1 once shown better, -1 once shown worse, else 0."""
        d = champion_loss - challenger_loss
        self.n = n = self.n + 1
        delta = d - self.mean
        self.mean = mean = self.mean + delta / n
        self.m2 += delta * (d - mean)
        if n < self.min_sample or self.m2 <= 0.0:
            return self.decision
        best = self.best_better if mean > 0 else self.best_worse
        if 0.5 * n * n * mean * mean / self.m2 - self._penalty <= best:  # log Lambda <= z^2/2 - penalty
            return self.decision
        value = float(normal_mixture_log_lr(n, mean, self.m2 / n, self.rho2))
        self._penalty = 0.5 * math.log1p(n * self.rho2) - 1e-9
        side = 1 if mean > 0 else -1
        if side > 0:
            self.best_better = max(best, value)
        else:
            self.best_worse = max(best, value)
        if not self.decision and value > -math.log(self.alpha):
            self.decision = side
        return self.decision

    def evidence(self) -> dict[str, Any]:
        """Mean difference, its confidence sequence and the always-valid p-values."""
        sd = math.sqrt(self.m2 / self.n) if self.m2 > 0.0 else math.inf
        radius = float(normal_mixture_radius(max(self.n, 1), sd, self.alpha, self.rho2))
        return {
            "test": self.test_name, "pairs": self.n, "mean_difference": self.mean,
            "ci": [self.mean - radius, self.mean + radius],
            "p_value": min(1.0, math.exp(-self.best_better)),
            "p_value_worse": min(1.0, math.exp(-self.best_worse)),
            "alpha": self.alpha, "min_sample": self.min_sample, "t_star": self.t_star, "decision": self.decision,
        }
