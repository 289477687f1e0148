"""The policy of a model key: verdicts, drift alarms and triggers become decisions.

After every scored labeled event the policy hears the champion's loss and,
when a challenger scored the same request, the challenger's. It owns

* the shadow experiment of the current challenger (promote, drop, keep),
* the rising-loss drift detector on the champion's loss (a stateless retrain
  becomes the challenger, or replaces the champion with ``on_drift="reset"``),
* the update triggers (time, performance, volume), each firing a retrain,
* the version checkpoints (MINOR bumped every ``version_every`` learned events),

and applies what it decides to the model key's :class:`Roles` (the arms).

A trigger that fires while the current challenger has had fewer than
``min_sample`` pairs lets that comparison run on: the firing is counted in
``deferred`` and no retrain starts, so a trigger faster than the test cannot
keep the test from ever deciding. A drift alarm is not deferred: the champion
is losing now.

The champion is the control of a running experiment (A/B/n, canary,
interleaving). A shadow promotion or a drift reset that replaces it stops the
experiment with a ``stop`` decision: its evidence was gathered against the
champion before, and would otherwise count towards a verdict against the new
one. Start the experiment again to compare its arms with the new champion.

>>> from stream_cd.config import PipelineConfig
>>> from stream_cd.model_key import ModelKey
>>> key = ModelKey("k", PipelineConfig(model="logreg", drift="none", version_every=3))
>>> [d.action for i in range(4) for d in key.learn({"f": float(i)}, i % 2 == 0, ts=0)]
['checkpoint']
>>> key.champion_version
'v1.1'
"""

from __future__ import annotations

from typing import Any, Protocol

from stream_cd.decisions import Decision
from stream_cd.evaluation.forgetting import check_forgetting
from stream_cd.evaluation.paired import ShadowExperiment, Verdict
from stream_cd.learning.arms import Arm
from stream_cd.learning.drift import RisingLossDetector
from stream_cd.learning.triggers import Trigger, build_triggers

__all__ = ["Roles", "Policy"]

NO_DECISIONS: list[Decision] = []  # shared, never changed: most events decide nothing


class Roles(Protocol):
    """What a policy acts on: the arms of one model key."""

    champion: Arm
    challenger: Arm | None
    events_seen: int
    learned: int
    running: Any  # the running experiment (stream_cd.evaluation.experiments), if any
    reference: Any  # the forgetting guard's reference sample, if any

    def promote(self) -> None: ...
    def promote_arm(self, arm: Arm) -> None: ...
    def end_experiment(self, outcome: dict[str, Any] | None = None) -> None: ...
    def drop_challenger(self) -> None: ...
    def new_challenger(self, trigger: str) -> Arm: ...
    def replace_champion(self, trigger: str) -> Arm: ...
    def bump_minor(self) -> None: ...
    def decide(self, action: str, trigger: str, ts: int, evidence: dict[str, Any], arm: Arm | None = None,
               arm_name: str | None = None) -> Decision: ...


class Policy:
    """Decisions of one model key (see the module docstring)."""

    def __init__(self, task: str, config: Any) -> None:
        self.task = task
        self.config = config
        self.experiment: ShadowExperiment | None = None
        self.detector = self._new_detector()
        self.triggers: list[Trigger] = build_triggers(config.triggers, task)
        self.retrains = self.promotions = self.drops = self.resets = self.deferred = self.holds = 0
        self.loss_n, self.loss_mean, self.loss_m2 = 0, 0.0, 0.0  # the champion's loss (Welford), for sample sizes

    def _new_detector(self) -> RisingLossDetector | None:
        c = self.config
        return RisingLossDetector(c.drift_delta) if c.drift == "adwin" else None

    def new_experiment(self) -> ShadowExperiment:
        """A fresh test for a challenger just born (or just made challenger)."""
        c = self.config
        self.experiment = ShadowExperiment(self.task, c.alpha, c.min_sample, c.drop_budget, c.report_every)
        return self.experiment

    def observe(self, roles: Roles, champion_loss: float, challenger_loss: float | None, ts: int) -> list[Decision]:
        """The decisions one scored event leads to, applied to ``roles``."""
        decisions = NO_DECISIONS
        champion = roles.champion
        self.loss_n = n = self.loss_n + 1
        delta = champion_loss - self.loss_mean
        self.loss_mean += delta / n
        self.loss_m2 += delta * (champion_loss - self.loss_mean)
        if challenger_loss is not None and self.experiment is not None:
            verdict = self.experiment.update(champion_loss, challenger_loss)
            if verdict is not None:
                decisions = [self._judge(roles, verdict, ts)]
        detector = self.detector  # after a promotion, the new champion's fresh detector takes this loss
        if detector is not None and detector.update(champion_loss):
            decisions = [*decisions, self._on_drift(roles, ts)]
        if self.triggers:
            for trigger in self.triggers:
                if trigger.observe(ts, roles.learned, champion_loss):
                    decisions = [*decisions, *self._on_trigger(roles, trigger.name, ts)]
        if roles.champion is not champion and roles.running is not None:
            decisions = [*decisions, self._control_replaced(roles, ts)]
        every = self.config.version_every
        if every is not None and roles.learned % every == 0:
            roles.bump_minor()
            decisions = [*decisions, roles.decide("checkpoint", "volume", ts, {"learned": roles.learned})]
        return decisions

    def reward_level(self) -> tuple[float | None, float | None]:
        """The champion's mean reward and its standard deviation so far (None before 100 events)."""
        if self.loss_n < 100:
            return None, None
        sd = (self.loss_m2 / (self.loss_n - 1)) ** 0.5
        return (1.0 - self.loss_mean if self.task == "classification" else None), (sd if sd > 0 else None)

    def guard(self, roles: Roles, candidate: Arm) -> tuple[bool, dict[str, Any]]:
        """The forgetting guard before ``candidate`` is promoted: (hold it back?, evidence)."""
        mode = self.config.forgetting
        if mode == "off" or roles.reference is None:
            return False, {}
        forgot, evidence = check_forgetting(self.task, roles.champion.model, candidate.model, roles.reference)
        return forgot and mode == "block", {"forgetting": {**evidence, "mode": mode, "forgot": forgot}}

    def on_experiment(self, roles: Roles, verdict: Verdict, ts: int) -> list[Decision]:
        """Apply a running experiment's verdict: a promotion (through the forgetting guard), a
        ramp step, a rollback, a pause for a sample-ratio mismatch, its end, or its status."""
        running = roles.running
        action, evidence = verdict.action, verdict.evidence
        if action == "promote":
            winner = running.arms[evidence["winner"]]
            hold, guard = self.guard(roles, winner)
            if hold:
                self.holds += 1
                decision = roles.decide("hold", "forgetting", ts, {**evidence, **guard}, winner, evidence["winner"])
                roles.end_experiment({**evidence, "state": "held: the winner has forgotten older data"})
                return [decision]
            decision = roles.decide("promote", "experiment", ts, {**evidence, **guard}, winner, evidence["winner"])
            roles.promote_arm(winner)
            roles.end_experiment({**evidence, "state": "promoted"})
            self.promotions += 1
            self.new_experiment()  # the old champion, now the shadow, is tested against the winner
            self.detector = self._new_detector()
            return [decision]
        if action == "hold":  # a sample-ratio mismatch: paused, the control serves everyone
            return [roles.decide("hold", "srm", ts, evidence)]
        decision = roles.decide(action, "experiment", ts, evidence)
        if action in ("rollback", "stop"):  # a stop says why: no significant difference, or the champion won
            roles.end_experiment({**evidence, "state": "rolled back" if action == "rollback"
                                  else evidence.get("reason", "no significant difference")})
        return [decision]

    def _control_replaced(self, roles: Roles, ts: int) -> Decision:
        """Stop the running experiment whose control (the champion) has just been replaced."""
        status = roles.running.test.status()
        reason = "the champion, this experiment's control, was replaced: its evidence was against the one before"
        decision = roles.decide("stop", "experiment", ts, {"reason": reason, **status})
        roles.end_experiment({**status, "state": "stopped: its control was replaced"})
        return decision

    def arm_failed(self, roles: Roles, arm: Arm, reason: str, ts: int) -> Decision:
        """A challenger that cannot use a valid event is dropped: it could never serve it."""
        decision = roles.decide("drop", "error", ts, {"reason": reason}, arm)
        roles.drop_challenger()
        self.experiment = None
        self.drops += 1
        return decision

    # -- what each decision does ---------------------------------------------------

    def _judge(self, roles: Roles, verdict: Verdict, ts: int) -> Decision:
        challenger = roles.challenger
        assert challenger is not None
        if verdict.action == "promote":
            hold, guard = self.guard(roles, challenger)
            if hold:  # held back: the test starts again, so a promotion needs new evidence
                self.holds += 1
                self.new_experiment()
                return roles.decide("hold", "forgetting", ts, {**verdict.evidence, **guard}, challenger)
            decision = roles.decide("promote", "comparator", ts, {**verdict.evidence, **guard}, challenger)
        else:
            decision = roles.decide(verdict.action, "comparator", ts, verdict.evidence, challenger)
        if verdict.action == "promote":
            roles.promote()  # the old champion stays on as the shadow, so a bad swap can be undone
            self.promotions += 1
            self.new_experiment()
            self.detector = self._new_detector()
        elif verdict.action == "drop":
            roles.drop_challenger()
            self.experiment = None
            self.drops += 1
        return decision

    def _drift_evidence(self) -> dict[str, Any]:
        detector = self.detector
        assert detector is not None
        return {"detector": "adwin", "delta": detector.delta,
                "recent_loss": round(detector.adwin.estimation, 6), "recent_width": detector.adwin.width}

    def _on_drift(self, roles: Roles, ts: int) -> Decision:
        evidence = self._drift_evidence()
        if self.config.on_drift == "reset":
            old = roles.replace_champion("drift")
            self.resets += 1
            self.retrains += 1
            self.detector = self._new_detector()
            if roles.challenger is not None:
                self.new_experiment()  # the pairs so far were against the replaced champion
            return roles.decide("reset", "drift", ts, {**evidence, "replaced": old.label}, roles.challenger)
        return self._retrain(roles, "drift", ts, evidence)

    def _on_trigger(self, roles: Roles, name: str, ts: int) -> list[Decision]:
        experiment = self.experiment
        if roles.challenger is not None and experiment is not None and experiment.pairs < self.config.min_sample:
            self.deferred += 1  # let the running comparison finish
            return []
        return [self._retrain(roles, name, ts, {"trigger": name})]

    def _retrain(self, roles: Roles, trigger: str, ts: int, evidence: dict[str, Any]) -> Decision:
        """A fresh model of the champion's spec becomes the challenger."""
        if roles.challenger is not None:
            evidence = {**evidence, "replaced_challenger": roles.challenger.label}
        arm = roles.new_challenger(trigger)
        self.new_experiment()
        self.retrains += 1
        return roles.decide("retrain", trigger, ts, evidence, arm)

    def counts(self) -> dict[str, int]:
        return {"retrains": self.retrains, "promotions": self.promotions, "drops": self.drops,
                "resets": self.resets, "deferred_triggers": self.deferred, "holds": self.holds}
