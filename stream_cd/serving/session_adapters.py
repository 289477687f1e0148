"""A session's adapter: how one session's own feedback corrects the global model's predictions.

Three kinds, each about 2.6 kB a session: :class:`LogitResidual` (a Bayesian
logistic correction of the class probabilities, the default for
classification), :class:`ClassCounts` (the session's base rate) and
:class:`MeanShift` (regression: the session's mean residual). They are held,
bounded and expired, by :class:`stream_cd.serving.sessions.SessionStore`,
which says how they were chosen. A :class:`LogitResidual` corrects at most
:data:`MAX_NAMES` coordinates a class (each value of a string feature is one):
a session that shows more learns the first ones only, so no session grows
without bound.

Checkpoints name these classes by ``stream_cd.serving.sessions``
(:data:`PICKLED_AS`), which offers them too, the path earlier versions of
stream-cd know them by: snapshots stay readable both ways during a rolling upgrade.

>>> a = MeanShift(prior=2.0)
>>> for y in (3.0, 5.0):
...     a.learn({}, y, 1.0)
>>> a.predict({}, 1.0)                            # residuals 2 and 4, shrunk by two pseudo-events
2.5
>>> type(a).__module__
'stream_cd.serving.sessions'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from stream_cd.serving.session_prior import BIAS as _BIAS
from stream_cd.serving.session_prior import PopulationPrior

# where checkpoints find these classes (see the module docstring)
PICKLED_AS = "stream_cd.serving.sessions"

__all__ = [
    "SessionAdapter",
    "LogitResidual",
    "ClassCounts",
    "MeanShift",
    "as_proba",
    "top_class",
    "MAX_NAMES",
]

_EPS = 1e-6
MAX_NAMES = 256  # coordinates a LogitResidual corrects, each class: the offset and the first features seen


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def as_proba(global_pred: Any) -> dict[Any, float]:
    """The champion's classification output as a probability dict.

    A dict (``predict_proba_one``) is returned as is; a bare class (``predict_one``) becomes
    certainty on that class.

    >>> as_proba({"a": 0.2, "b": 0.8}), as_proba(True)
    ({'a': 0.2, 'b': 0.8}, {True: 1.0})
    """
    if isinstance(global_pred, dict):
        return global_pred
    return {global_pred: 1.0}


def top_class(proba: Any) -> Any:
    """The class served for a probability dict (the most probable; the first on a tie).

    >>> top_class({False: 0.4, True: 0.6}), top_class({}), top_class("cat")
    (True, None, 'cat')
    """
    if not isinstance(proba, dict):
        return proba
    if not proba:
        return None
    return max(proba, key=proba.__getitem__)


class SessionAdapter:
    """One session's adaptation state: corrects the global prediction from the session's feedback.

    ``predict(x, global_pred)`` returns the adapted prediction; ``learn(x, y, global_pred)``
    takes the session's label, where ``global_pred`` is the champion's prediction for the same
    event made *before* the champion learned it (progressive validation). An adapter with
    ``n == 0`` returns ``global_pred`` itself. ``weight`` (0 to 1) says how far the session's
    own evidence, rather than the global model, drives its predictions; it grows with feedback.
    """

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    @property
    def weight(self) -> float:
        raise NotImplementedError

    def predict(self, x: dict, global_pred: Any) -> Any:
        raise NotImplementedError

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        raise NotImplementedError

    def new_population_prior(self) -> PopulationPrior | None:
        """A prior for a :class:`SessionStore` to learn and set as its adapters' ``population``."""
        return None  # this kind of adapter learns no population prior


class LogitResidual(SessionAdapter):
    """Bayesian per-session logistic correction of the global class probabilities.

    For each class ``c`` the adapted logit is ``logit(p_c) + b_c + sum_j w_cj * x_j`` with a
    Gaussian prior centred on zero (on the global prediction), fitted online by one diagonal
    Newton step per event: a Laplace approximation, as Chapelle and Li (2011) fit Bayesian
    logistic regression online. With no feedback it returns the global prediction exactly.

    Parameters
    ----------
    prior_bias
        Prior standard deviation of the session's per-class logit offset: how far, a priori,
        a session's base rate departs from the global model's.
    prior_weight
        Prior standard deviation of the session's per-feature logit weights (per unit of the
        feature: numbers are taken as they are, so give features on a unit scale; booleans
        and strings count as 0/1 indicators, a string as ``name=value``).
    features
        The features the correction may use; ``None`` for all, ``()`` for the offset only.
    blend
        ``k`` of an extra linear blend ``(1 - w) * global + w * adapted``, ``w = n / (n + k)``;
        0 (the default, best measured) leaves the shrinkage to the prior.
    population
        The :class:`~stream_cd.serving.session_prior.PopulationPrior` of the model key's sessions (a
        :class:`SessionStore` sets it): a new coordinate starts from its learned spread, not
        ``prior_bias`` / ``prior_weight``, and the session reports its posterior when due. A
        session keeps the prior each coordinate started with: it changes only as it learns.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> a = LogitResidual()
    >>> g = {False: 0.5, True: 0.5}                 # a global model with no opinion
    >>> for _ in range(30):                         # this session says True exactly when f > 0
    ...     x = {"f": rng.uniform(-1, 1)}
    ...     a.learn(x, x["f"] > 0, g)
    >>> [round(a.predict({"f": f}, g)[True], 2) for f in (-1.0, 0.0, 1.0)]
    [0.17, 0.39, 0.67]
    >>> a.n, round(a.weight, 3)
    (30, 0.936)
    """

    __slots__ = ("prior_bias", "prior_weight", "features", "blend", "_w", "_h", "population")

    def __init__(
        self,
        prior_bias: float = 1.5,
        prior_weight: float = 0.5,
        features: Iterable[str] | None = None,
        blend: float = 0.0,
        population: PopulationPrior | None = None,
    ) -> None:
        super().__init__()
        self.prior_bias = prior_bias
        self.prior_weight = prior_weight
        self.features = None if features is None else frozenset(features)
        self.blend = blend
        self._w: dict[Any, dict[str, float]] = {}  # class -> feature (or _BIAS) -> weight
        self._h: dict[Any, dict[str, float]] = {}  # class -> feature -> posterior precision
        self.population = population

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        self.population = None  # a checkpoint from before issue 18 has no population prior
        for name, value in state[1].items():
            setattr(self, name, value)

    def new_population_prior(self) -> PopulationPrior | None:
        """One that starts from this adapter's fixed prior; None if it has a population."""
        return PopulationPrior(self.prior_bias, self.prior_weight) if self.population is None else None

    def posterior(self) -> Iterator[tuple[str, float, float]]:
        """``(coordinate, posterior mean, posterior precision)`` of every class's correction."""
        for c, w in self._w.items():
            h = self._h[c]
            for name, mean in w.items():
                yield name, mean, h[name]

    def _inputs(self, x: dict) -> list[tuple[str, float]]:
        out = [(_BIAS, 1.0)]
        keep = self.features
        for name, value in x.items():
            if keep is not None and name not in keep:
                continue
            kind = type(value)
            if kind is str:
                out.append((f"{name}={value}", 1.0))
            elif value:  # a zero (or False) adds nothing to a logit
                out.append((name, float(value)))
        return out

    def _scores(self, inputs: list[tuple[str, float]], proba: dict) -> dict[Any, float]:
        scores = {}
        for c, p in proba.items():
            z = _logit(p)
            w = self._w.get(c)
            if w:
                z += sum(w.get(name, 0.0) * v for name, v in inputs)
            scores[c] = _sigmoid(z)
        return scores

    @property
    def weight(self) -> float:
        """The share of the offset's precision that comes from the session's own events."""
        if self.n == 0:
            return 0.0
        prior = 1.0 / self.prior_bias**2 if self.population is None else self.population.precision(_BIAS)
        post = max(h.get(_BIAS, prior) for h in self._h.values())
        share = max(0.0, 1.0 - prior / post)
        if self.blend:
            share *= self.n / (self.n + self.blend)
        return share

    def predict(self, x: dict, global_pred: Any) -> Any:
        proba = as_proba(global_pred)
        if self.n == 0:
            return global_pred
        proba = {**dict.fromkeys(self._w, 0.0), **proba}  # classes only this session has shown
        scores = self._scores(self._inputs(x), proba)
        total = sum(scores.values())
        adapted = {c: s / total for c, s in scores.items()}
        if self.blend:
            w = self.n / (self.n + self.blend)
            adapted = {c: (1.0 - w) * proba[c] + w * q for c, q in adapted.items()}
        return adapted

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        proba = as_proba(global_pred)
        if y not in proba:
            proba = {**proba, y: 0.0}
        inputs = self._inputs(x)
        scores = self._scores(inputs, proba)
        population = self.population
        prior_b = 1.0 / self.prior_bias**2
        prior_f = 1.0 / self.prior_weight**2
        for c, q in scores.items():
            g = (1.0 if c == y else 0.0) - q
            h = q * (1.0 - q)
            w = self._w.get(c)
            if w is None:
                w = self._w[c] = {}
                self._h[c] = {}
            hc = self._h[c]
            for name, v in inputs:
                prec = hc.get(name)
                if prec is None:
                    if len(hc) >= MAX_NAMES:
                        continue  # a session's coordinates are bounded: new ones beyond it are not learned
                    if population is None:
                        prec = prior_b if name is _BIAS else prior_f
                    else:
                        prec = population.precision(name)
                prec += h * v * v
                hc[name] = prec
                w[name] = w.get(name, 0.0) + g * v / prec
        self.n += 1
        if population is not None and population.due(self.n):
            population.observe(self.posterior())


class ClassCounts(SessionAdapter):
    """Per-session class counts with a Dirichlet prior centred on the global prediction.

    The adapted probability of class ``c`` is ``(prior * p_c + n_c) / (prior + n)``: the
    session's own class frequencies, shrunk to the global model by ``prior`` pseudo-events.
    It ignores the features (a session's base rate only).

    >>> a = ClassCounts(prior=4.0)
    >>> for y in (True, True, False, True):
    ...     a.learn({}, y, {False: 0.5, True: 0.5})
    >>> a.predict({}, {False: 0.8, True: 0.2}), a.weight
    ({False: 0.525, True: 0.475}, 0.5)
    """

    __slots__ = ("prior", "counts")

    def __init__(self, prior: float = 8.0) -> None:
        super().__init__()
        self.prior = prior
        self.counts: dict[Any, int] = {}

    @property
    def weight(self) -> float:
        return self.n / (self.n + self.prior) if self.n else 0.0

    def predict(self, x: dict, global_pred: Any) -> Any:
        if self.n == 0:
            return global_pred
        proba = as_proba(global_pred)
        a, total = self.prior, self.prior + self.n
        classes = {**proba, **dict.fromkeys(c for c in self.counts if c not in proba)}
        return {c: (a * proba.get(c, 0.0) + self.counts.get(c, 0)) / total for c in classes}

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        self.counts[y] = self.counts.get(y, 0) + 1
        self.n += 1


class MeanShift(SessionAdapter):
    """Regression: the global prediction plus the session's mean residual, shrunk to zero.

    The shift is ``sum(y - global) / (n + prior)``.

    >>> a = MeanShift(prior=2.0)
    >>> for y in (12.0, 11.0, 13.0):
    ...     a.learn({}, y, 10.0)
    >>> a.predict({}, 10.0), a.weight
    (11.2, 0.6)
    """

    __slots__ = ("prior", "residual")

    def __init__(self, prior: float = 2.0) -> None:
        super().__init__()
        self.prior = prior
        self.residual = 0.0

    @property
    def weight(self) -> float:
        return self.n / (self.n + self.prior) if self.n else 0.0

    def predict(self, x: dict, global_pred: Any) -> Any:
        if self.n == 0 or global_pred is None:
            return global_pred
        return global_pred + self.residual / (self.n + self.prior)

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        self.residual += float(y) - float(0.0 if global_pred is None else global_pred)
        self.n += 1


for _adapter in (SessionAdapter, LogitResidual, ClassCounts, MeanShift):
    _adapter.__module__ = PICKLED_AS
