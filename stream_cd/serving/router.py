"""Routers: for each request, which arm serves it and which arms score it.

Shadow is the router of a model key without an experiment: the champion
serves every request, and every arm (the champion and its shadow challengers)
scores it, so each labeled event gives a *pair* of outputs to compare. A/B/n,
canary and interleaving routers serve some units from other arms; they share
this interface.

>>> from stream_cd.learning.arms import Arm
>>> from stream_cd.learning.specs import ModelSpec
>>> from stream_cd.learning.versions import Version
>>> champion = Arm("champion", ModelSpec.parse("logreg"), Version(1))
>>> shadow = Arm("challenger", ModelSpec.parse("hoeffding-tree"), Version(2))
>>> router = ShadowRouter()
>>> router.serving(champion, [shadow], unit="u7") is champion
True
>>> [arm.name for arm in router.scoring(champion, [shadow])]
['champion', 'challenger']
"""

from __future__ import annotations

from collections.abc import Sequence

from stream_cd.learning.arms import Arm

__all__ = ["Router", "ShadowRouter"]


class Router:
    """Which arm serves a unit's request, and which arms score every request."""

    name = "router"

    def serving(self, champion: Arm, others: Sequence[Arm], unit: str | None = None) -> Arm:
        raise NotImplementedError

    def scoring(self, champion: Arm, others: Sequence[Arm]) -> tuple[Arm, ...]:
        """The arms that score every request, the serving arm's output first."""
        raise NotImplementedError


class ShadowRouter(Router):
    """The champion serves; every arm scores."""

    name = "shadow"

    def serving(self, champion: Arm, others: Sequence[Arm], unit: str | None = None) -> Arm:
        return champion

    def scoring(self, champion: Arm, others: Sequence[Arm]) -> tuple[Arm, ...]:
        return (champion, *others)
