"""The population prior of session adaptation, learned from the sessions a model key has seen.

A session's adapter (:class:`stream_cd.serving.sessions.LogitResidual`) corrects the
global model's logit by a per-session offset and per-feature weights, each with
a Gaussian prior centred on zero (on the global model). The prior's spread says
how far a session may depart from the global model; fixed, it is too cautious
where users differ much and too bold where they differ little. Here it is
estimated from the sessions themselves: parametric empirical Bayes (Robbins
1956; Efron and Morris 1973; Morris 1983), the James–Stein idea that the
spread of many units' estimates tells how much to shrink each of them.

Model: the correction ``w_sj`` of coordinate ``j`` (the offset, a feature or a
``name=value`` indicator) in session ``s`` is drawn from ``N(0, tau_j^2)``;
``tau_j^2`` is the maximum marginal likelihood estimate, found by EM
(Dempster, Laird and Rubin 1977), whose M-step for a zero-mean normal prior is
the mean of the posterior second moments, ``tau_j^2 = mean_s E[w_sj^2 |
data_s] = mean_s (m_sj^2 + 1 / P_sj)``, with ``m`` and ``P`` the posterior mean
and precision of each session's correction (the adapter's Laplace
approximation). It runs online as stochastic-approximation EM (Cappé and
Moulines 2009): each draw moves the estimate by ``gamma = max(1 / (strength +
draws), 1 / memory)``, a running mean that starts from the default as
``strength`` pseudo-draws and then forgets at ``1 / memory``, so it follows a
population that changes.

Why EM rather than the method of moments (DerSimonian and Laird 1986) or
Fisher scoring on each session's unshrunk estimate ``P m / H``: those need the
data's share ``H = P - 1/tau_0^2`` of the posterior precision, so the prior
the session started from, which it does not keep; with the current prior in
its place, tried on the populations of ``bench/coldstart.py``, they drove most
feature spreads to the lower bound and lost about 5 points of accuracy at a
session's 10th event where users' weights differ a lot. EM needs only ``(m,
P)``. Its price: where sessions show little against a narrow prior it
approaches the spread slowly, from above (EM's rate is the fraction of missing
information, Dempster, Laird and Rubin 1977). Where users differ much the
learned spreads come out near half the true ones; they are the spreads that
suit the adapter's one-pass diagonal fit, which given the true spreads is no
more accurate (``bench/coldstart.py --reference``), and with them it is within
a point of the full MAP refit that knows the true prior.

When sessions report (amortised cheaper than per event): a session is drawn
when its count of labelled events reaches ``first`` and again at every doubling
(4, 8, 16, ...), each time with all its events so far. Under the model, the
posterior second moment at any such stopping time has mean ``tau^2`` (tower
property), so short and long sessions both count, long ones a few times more.
That is O(coordinates of the session) at ``log2(n)`` of its ``n`` events.

Bounded: each spread is kept within ``bounds`` (standard deviations, in
logits per unit of the feature) and at most ``max_names`` coordinates get
their own estimate; a feature name beyond them, or not drawn yet, takes the
pooled estimate of all features (the offset has its own). The prior pickles
with the :class:`~stream_cd.serving.sessions.SessionStore` that holds it, so it is
part of the model key's checkpoint.

>>> prior = PopulationPrior(bias_sd=1.5, weight_sd=0.5)
>>> prior.sd(BIAS), prior.sd("f0")                 # the weak default
(1.5, 0.5)
>>> import random
>>> rng = random.Random(3)
>>> for _ in range(2000):        # posterior means of the offset spread with sd 2, each +- 0.5
...     prior.observe([(BIAS, rng.gauss(0.0, 2.0), 4.0), ("f0", rng.gauss(0.0, 0.1), 4.0)])
>>> round(prior.sd(BIAS), 2), round(prior.sd("f0"), 2), round(prior.sd("f9"), 2)
(2.05, 0.51, 0.51)
>>> prior.draws, prior.due(8), prior.due(12)
(4000, True, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["PopulationPrior", "BIAS"]

BIAS = "\x00bias"  # the offset's coordinate name; no feature name starts with NUL


class PopulationPrior:
    """Prior spreads of session corrections, per coordinate, by online empirical Bayes.

    Parameters
    ----------
    bias_sd, weight_sd
        The default spreads (standard deviations in logits) of the offset and of a feature
        weight, where the estimate starts.
    strength
        Pseudo-draws the default counts as: small, so that a few sessions override it.
    memory
        The estimate forgets at ``1 / memory`` per draw once it has that many (a draw is one
        class's correction of one coordinate: a binary session of 30 events gives each of
        its coordinates 6). 500 did better than 2,000 on ``bench/coldstart.py``'s populations
        after 500 warm-up users (up to 1.6 points at k = 10): the draws of
        sessions that started under an older prior fade sooner.
    bounds
        ``(lowest, highest)`` spread an estimate may take.
    first
        A session is drawn at ``first`` labelled events and at every doubling after.
    max_names
        Coordinates with an estimate of their own; the others share the pooled one.

    Examples
    --------
    >>> prior = PopulationPrior(bias_sd=1.0, weight_sd=0.5, strength=1.0, bounds=(0.1, 3.0))
    >>> prior.observe([(BIAS, 0.0, 4.0), ("f", 40.0, 1.0)])   # E[w^2] = m^2 + 1/P per draw
    >>> prior.sd(BIAS), prior.sd("f"), prior.sd("g")           # sqrt((1 + 0.25) / 2); f capped
    (0.7905694150420949, 3.0, 3.0)
    >>> round(prior.precision("f"), 4)
    0.1111
    """

    def __init__(
        self,
        bias_sd: float = 1.5,
        weight_sd: float = 0.5,
        *,
        strength: float = 10.0,
        memory: float = 500.0,
        bounds: tuple[float, float] = (0.05, 4.0),
        first: int = 4,
        max_names: int = 1024,
    ) -> None:
        low, high = bounds
        if not 0 < low <= high:
            raise ValueError(f"bounds {bounds}: need 0 < lowest <= highest")
        if strength <= 0 or memory < 1 or first < 1 or max_names < 0:
            raise ValueError("strength must be positive, memory and first at least 1, max_names >= 0")
        self.strength = strength
        self.memory = memory
        self.low, self.high = low * low, high * high
        self.first = first
        self.max_names = max_names
        self._var: dict[str, float] = {BIAS: self._clip(bias_sd**2)}  # coordinate -> tau^2
        self._draws: dict[str, int] = {BIAS: 0}
        self._pooled = self._clip(weight_sd**2)  # of all features: for names without their own
        self._pooled_draws = 0
        self._prec: dict[str, float] = {BIAS: 1.0 / self._var[BIAS]}  # 1 / tau^2, what adapters read
        self.draws = 0  # coordinates drawn, in all

    def _clip(self, var: float) -> float:
        return min(max(var, self.low), self.high)

    def _step(self, draws: int) -> float:
        return max(1.0 / (self.strength + draws), 1.0 / self.memory)

    def precision(self, name: str) -> float:
        """The prior precision ``1 / tau^2`` a new correction of ``name`` starts from."""
        prec = self._prec.get(name)
        return 1.0 / self._pooled if prec is None else prec

    def sd(self, name: str) -> float:
        """The prior spread ``tau`` of ``name`` (:data:`BIAS` for the offset)."""
        return math.sqrt(1.0 / self.precision(name))

    def due(self, n: int) -> bool:
        """Whether a session with ``n`` labelled events is drawn now (``first``, then doublings)."""
        q, r = divmod(n, self.first)
        return r == 0 and q > 0 and q & (q - 1) == 0

    def observe(self, posterior: Iterable[tuple[str, float, float]]) -> None:
        """One session's draw: ``(name, posterior mean, posterior precision)`` per coordinate."""
        var, draws = self._var, self._draws
        for name, mean, prec in posterior:
            if not (prec > 0.0 and math.isfinite(mean) and math.isfinite(prec)):
                continue  # a session pushed past what floats hold (extreme features) teaches nothing
            moment = mean * mean + 1.0 / prec  # E[w^2 | the session's data]
            self.draws += 1
            old = var.get(name)
            if old is None and len(var) <= self.max_names:
                old, draws[name] = self._pooled, 0  # a new name starts from the pooled estimate
            if old is not None:
                k = draws[name] = draws[name] + 1
                new = var[name] = self._clip(old + self._step(k) * (moment - old))
                self._prec[name] = 1.0 / new
            if name != BIAS:
                self._pooled_draws += 1
                self._pooled = self._clip(self._pooled + self._step(self._pooled_draws) * (moment - self._pooled))

    def spreads(self) -> dict[str, float]:
        """The current spreads: ``bias``, ``features`` (pooled) and each named coordinate.

        >>> PopulationPrior(2.0, 0.25).spreads()
        {'bias': 2.0, 'features': 0.25}
        """
        out = {"bias": math.sqrt(self._var[BIAS]), "features": math.sqrt(self._pooled)}
        out.update((name, math.sqrt(v)) for name, v in self._var.items() if name != BIAS)
        return out
