"""The roles of a model key's arms, and the changes a policy makes to them.

The champion serves; the challenger is its shadow; an experiment's arms serve
the units routed to them. A policy (:mod:`stream_cd.evaluation.policy`) acts on
a model key only through these methods: a promotion (the old champion stays on
as the shadow), a drop, a stateless retrain, a reset, an experiment's end, a
version bump, and the decision that records each of them.
"""

from __future__ import annotations

from typing import Any

from stream_cd.decisions import Decision
from stream_cd.learning.arms import Arm

__all__ = ["KeyRoles", "CHAMPION", "CHALLENGER"]

CHAMPION, CHALLENGER = "champion", "challenger"


class KeyRoles:
    """The role changes of :class:`~stream_cd.model_key.ModelKey` (a part of it)."""

    @property
    def champion_version(self) -> str:
        return self.champion.label

    @property
    def challenger_version(self) -> str | None:
        return None if self.challenger is None else self.challenger.label

    def promote(self) -> None:
        """The challenger serves; the old champion stays on as its shadow."""
        assert self.challenger is not None
        self.champion, self.challenger = self.challenger, self.champion
        self.champion.name, self.challenger.name = CHAMPION, CHALLENGER
        self._route()

    def drop_challenger(self) -> None:
        self.challenger = None
        self._route()

    def new_challenger(self, trigger: str) -> Arm:
        """A fresh model of the champion's spec (a stateless retrain) as the challenger."""
        spec = self.champion.spec
        version = self.book.birth(spec.name, trigger, self.events_seen, parent=self.champion.version)
        self.challenger = Arm(CHALLENGER, spec, version, self.window)
        self._route()
        return self.challenger

    def replace_champion(self, trigger: str) -> Arm:
        """A fresh model of the champion's spec serves at once; return the replaced one."""
        old = self.champion
        version = self.book.birth(old.spec.name, trigger, self.events_seen, parent=old.version)
        self.champion = Arm(CHAMPION, old.spec, version, self.window)
        self._route()
        return old

    def promote_arm(self, arm: Arm) -> None:
        """An experiment's winner serves; the old champion stays on as its shadow."""
        old = self.champion
        self.champion, self.challenger = arm, old
        arm.name, old.name = CHAMPION, CHALLENGER
        self.end_experiment()

    def end_experiment(self, outcome: dict[str, Any] | None = None) -> None:
        if outcome is not None:
            self.last_experiment = outcome
        self.running = None
        self._route()

    def bump_minor(self) -> None:
        """Stateful progress: MINOR of every arm goes up."""
        for arm in self._learners:
            arm.version = arm.version.next_minor()

    def decide(self, action: str, trigger: str, ts: int, evidence: dict[str, Any], arm: Arm | None = None,
               arm_name: str | None = None) -> Decision:
        """A decision of this key at the event being handled; ids stay unique within one event.

        Its evidence carries the rolling metric of every arm (``rolling``), so that the
        decisions alone draw how each arm did over the stream."""
        challenger = arm if arm is not None else self.challenger
        running = self.running
        decision = Decision(
            model_key=self.key, action=action, trigger=trigger, champion_version=self.champion.label,
            challenger_version=None if challenger is None else challenger.label, events_seen=self.events_seen,
            evidence={**evidence, "rolling": self.rolling()}, ts=ts, arm=arm_name or (None if arm is None else arm.name),
            position=self.position, experiment=None if running is None else running.name,
            traffic=None if running is None else running.test.traffic(),
        )
        at, given = self._ids_at
        if at != (self.position, self.events_seen):
            self._ids_at = at, given = (self.position, self.events_seen), []
        if decision.decision_id in given:  # a second decision of the same kind at one event
            decision = Decision(**{**decision.__dict__, "decision_id": f"{decision.decision_id}#{len(given) + 1}"})
        given.append(decision.decision_id)
        return decision
