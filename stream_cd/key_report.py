"""What a model key reports: its arms' rolling metrics, its served records and its summary."""

from __future__ import annotations

from typing import Any

from stream_cd.serving.exposures import Exposure, served_record

__all__ = ["KeyReport"]


class KeyReport:
    """The reporting side of :class:`~stream_cd.model_key.ModelKey` (a part of it)."""

    def rolling(self) -> dict[str, Any]:
        """The rolling metric of every arm: ``metric`` (Accuracy or MAE), ``window`` (events)
        and per arm its ``version``, ``spec``, ``value`` (None before it scored an event)
        and how many events it has ``scored``.

        >>> from stream_cd.config import PipelineConfig
        >>> from stream_cd.model_key import ModelKey
        >>> key = ModelKey("k", PipelineConfig(model="logreg", shadow="logreg", drift="none"))
        >>> for i in range(4):
        ...     _ = key.learn({"f": float(i % 2)}, i % 2 == 0, ts=0)
        >>> key.rolling()["arms"]["champion"]
        {'version': 'v1.0', 'spec': 'logreg', 'value': 0.5, 'scored': 4}
        """
        classification = self.task != "regression"
        arms = {}
        for arm in self._learners:  # the champion, its shadow, and a running experiment's arms
            mean = arm.recent.mean
            value = None if mean is None else round(1.0 - mean if classification else mean, 6)
            arms[arm.name] = {"version": arm.label, "spec": arm.spec.name, "value": value, "scored": arm.recent.scored}
        return {"metric": "Accuracy" if classification else "MAE", "window": self.window, "arms": arms}

    def served_record(self, exposure: Exposure, ident: str | None, ts: int) -> dict[str, Any]:
        """What was served for a request, as one message of the predictions topic."""
        if self.ranking is not None:
            return exposure.record(self.key, ident, ts)  # type: ignore[attr-defined]
        return served_record(self.key, exposure, ident, ts)

    def summary(self) -> dict[str, Any]:
        """The per-key part of the run summary."""
        metric = self.metric
        return {
            "champion_version": self.champion_version,
            "champion_spec": self.champion.spec.name,
            "challenger_version": self.challenger_version,
            "task": self.task if self.ranking is None else "ranking",
            "metric": None if metric is None else {"name": type(metric).__name__, "value": metric.get()},
            "events_seen": self.events_seen,
            "learned": self.learned,
            "held_back": dict(self.held_back),
            **({"retrains": 0, "promotions": 0, "drops": 0, "resets": 0, "deferred_triggers": 0, "holds": 0}
               if self.policy is None else self.policy.counts()),
            "experiment": self.last_experiment if self.running is None else self.running.test.status(),
            "feedback": self.exposures.stats(),
            "sessions": None if self.sessions is None else self.sessions.stats(),
            **({} if self.ranking is None else {"ranking": self.ranking.stats()}),
        }

