"""Rankers: a River classifier of clicks that ranks the candidates of a request.

Any classifier spec with ``predict_proba_one`` (``logreg``, ``hoeffding-tree``,
``arf``, or ``package.module:factory``) serves as a ranker on a model key whose
events are ranking requests. It sees each candidate as one example whose
features combine the request's and the item's (:func:`candidate_features`):

* ``q_<name>`` for each query feature (the same for every candidate of a request),
* ``i_<name>`` for each item feature,
* ``qi_<name>`` = query value x item value for each name that is a number in both:
  how well the item matches the query along that dimension. A linear model
  cannot rank by query-item match from ``q_`` and ``i_`` alone (a query feature
  shifts every candidate's score alike); the products let it, and trees can use
  ``q_`` and ``i_`` directly.

It scores each candidate by its probability of a click (``True``) and serves them
in descending order, ties in the order given (:func:`rank`).

Labels come from clicks by the skip-above rule (Joachims 2002, "Optimizing search
engines using clickthrough data"; Joachims, Granka, Pan, Hembrooke and Gay 2005):
a clicked item is a positive; an item shown above the lowest click and not
clicked is a negative (the user looked past it to click something below); items
below the lowest click are not labelled, since under position bias they were most
likely never examined, and an impression without clicks teaches nothing
(:func:`click_labels`). Labelling every shown item negative would instead teach
the ranker that low positions are irrelevant, which is what it put there.

>>> from stream_cd.learning.specs import ModelSpec
>>> model = ModelSpec.parse("logreg").build()
>>> query, items = {"f0": 1.0}, [{"f0": -1.0}, {"f0": 1.0}]
>>> candidate_features(query, items)[1]
{'q_f0': 1.0, 'i_f0': 1.0, 'qi_f0': 1.0}
>>> rank(model, candidate_features(query, items))   # untrained: a tie, in the order given
[0, 1]
>>> for _ in range(20):
...     for features, label in zip(candidate_features(query, items), (False, True)):
...         model.learn_one(features, label)
>>> rank(model, candidate_features(query, items))
[1, 0]
>>> click_labels([3, 0, 2, 1], clicked={0, 2})   # positions 0-2 labelled, position 3 not
[(3, False), (0, True), (2, True)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["candidate_features", "scores", "rank", "click_labels", "ClickThrough"]

_NUMBERS = (int, float)
_NAMES: dict[str, tuple[str, str, str]] = {}  # feature name -> (q_name, i_name, qi_name), one object each
_MAX_NAMES = 10_000


def _names(name: str) -> tuple[str, str, str]:
    names = _NAMES.get(name)
    if names is None:
        names = (f"q_{name}", f"i_{name}", f"qi_{name}")
        if len(_NAMES) < _MAX_NAMES:  # the same name objects for every event keep River's dict lookups fast
            _NAMES[name] = names
    return names


def candidate_features(query: dict[str, Any], items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each candidate's features: ``q_`` query, ``i_`` item, ``qi_`` their product (see above)."""
    prefixed = {}
    numbers = {}
    for name, value in query.items():
        prefixed[_names(name)[0]] = value
        if type(value) in _NUMBERS:
            numbers[name] = value
    out = []
    seen: dict[str, tuple[str, str, Any]] = {}  # item feature name -> (i_ name, qi_ name, query value)
    for item in items:
        x = prefixed.copy()
        for name, value in item.items():
            known = seen.get(name)
            if known is None:
                _, i_name, qi_name = _names(name)
                known = seen[name] = (i_name, qi_name, numbers.get(name))
            x[known[0]] = value
            if known[2] is not None and type(value) in _NUMBERS:
                x[known[1]] = known[2] * value
        out.append(x)
    return out


def scores(model: Any, features: Sequence[dict[str, Any]]) -> list[float]:
    """Each candidate's probability of a click under ``model``."""
    proba = model.predict_proba_one
    return [proba(x).get(True, 0.0) for x in features]


def rank(model: Any, features: Sequence[dict[str, Any]]) -> list[int]:
    """Candidate indexes by descending score; equal scores keep the order given."""
    s = scores(model, features)
    return sorted(range(len(s)), key=lambda j: -s[j])


def click_labels(served: Sequence[int], clicked: set[int] | frozenset[int]) -> list[tuple[int, bool]]:
    """``(candidate, label)`` for the served positions down to the lowest click (skip-above)."""
    lowest = -1
    for position, candidate in enumerate(served):
        if candidate in clicked:
            lowest = position
    return [(candidate, candidate in clicked) for candidate in served[: lowest + 1]]


class ClickThrough:
    """The served metric of a ranking key: the share of impressions with at least one click
    (``get``), with the clicks per impression beside it.

    >>> metric = ClickThrough()
    >>> for clicks in (0, 2, 1, 0):
    ...     metric.update(clicks)
    >>> metric.get(), metric.clicks_per_impression
    (0.5, 0.75)
    """

    def __init__(self) -> None:
        self.impressions = self.clicked = self.clicks = 0

    def update(self, clicks: int) -> None:
        self.impressions += 1
        self.clicks += clicks
        self.clicked += clicks > 0

    def get(self) -> float:
        return self.clicked / self.impressions if self.impressions else 0.0

    @property
    def clicks_per_impression(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0
