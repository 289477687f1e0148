"""A running experiment of a model key: its definition, its arms and its test.

Started by a ``start`` control message and ended by a verdict (a winner, a
rollback, no significant difference) or a ``stop``. It routes each unit to
an arm (:meth:`RunningExperiment.route`; an interleaving experiment routes no
unit: every ranking request shows both) and holds the arms besides the
control; the control is the key's champion.

>>> from stream_cd.evaluation.definition import ExperimentDefinition
>>> from stream_cd.learning.versions import VersionBook
>>> d = ExperimentDefinition.from_mapping({"name": "ab-1", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}]})
>>> running = RunningExperiment(d, VersionBook(), parent=None, events_seen=0, task="classification")
>>> running.arms["b"].label, running.route("u1") in ("control", "b"), running.route(None)
('v1.0', True, 'control')
"""

from __future__ import annotations

from typing import Any

from stream_cd.evaluation.abtest import ABExperiment
from stream_cd.evaluation.canary import CanaryExperiment
from stream_cd.evaluation.definition import CONTROL, ExperimentDefinition
from stream_cd.evaluation.interleave import InterleaveExperiment
from stream_cd.learning.arms import Arm
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.versions import Version, VersionBook

__all__ = ["RunningExperiment"]


class RunningExperiment:
    """One experiment on one model key, from its start to its end."""

    def __init__(self, definition: ExperimentDefinition, book: VersionBook, parent: Version | None, events_seen: int,
                 task: str | None, baseline: float | None = None, sd: float | None = None,
                 report_every: int = 5000) -> None:
        self.definition = definition
        self.name = definition.name
        specs = {name: ModelSpec.parse(spec) for name, spec in definition.arms}
        if task is not None:
            for spec in specs.values():
                spec.check_task(task)
        self.arms = {name: Arm(name, spec, book.birth(spec.name, "experiment", events_seen, parent=parent))
                     for name, spec in specs.items()}
        self.test: ABExperiment | CanaryExperiment | InterleaveExperiment
        if definition.kind == "ab":
            self.test = ABExperiment(definition, baseline, sd, report_every)
        elif definition.kind == "canary":
            self.test = CanaryExperiment(definition, report_every)
        else:
            self.test = InterleaveExperiment(definition, report_every)

    @property
    def epoch(self) -> int:
        """What a request's share was assigned under: the canary's step (0 for A/B/n)."""
        return getattr(self.test, "step", 0)

    def route(self, unit: str | None) -> str:
        """The arm that serves ``unit``; requests without a unit go to the control and are not counted."""
        return CONTROL if unit is None else self.test.assign(unit)

    def start_evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {"definition": self.definition.to_dict(),
                                    "arms": {name: arm.label for name, arm in self.arms.items()},
                                    "traffic": self.test.traffic()}
        if isinstance(self.test, ABExperiment):
            evidence["sample_size"] = self.test.sample_size
        return evidence
