"""A model key while an experiment runs: control messages, routing, learning and scoring.

A ``start`` control message builds the experiment's arms and test
(:class:`~stream_cd.evaluation.experiments.RunningExperiment`); while it runs,
each request is served by its unit's arm, the arms learn from the feedback
(each what it served, or all of them everything: ``learn``), and the served
arm's reward goes to the experiment's test, whose verdicts the policy applies.
"""

from __future__ import annotations

from typing import Any

from stream_cd.decisions import Decision
from stream_cd.errors import ConfigError, InvalidEvent
from stream_cd.evaluation.definition import CONTROL, ExperimentDefinition
from stream_cd.evaluation.experiments import RunningExperiment
from stream_cd.learning.tasks import loss_of
from stream_cd.serving.exposures import NO_OUTPUT, Exposure
from stream_cd.serving.ranking import Rankings

__all__ = ["KeyExperiments"]


class KeyExperiments:
    """The experiment side of :class:`~stream_cd.model_key.ModelKey` (a part of it)."""

    _verdicts: list = []  # an experiment's verdicts on the event being handled; shared empty list

    def control(self, action: str, experiment: dict[str, Any], ts: int) -> list[Decision]:
        """Start or stop an experiment; a definition that is not valid is refused whole."""
        self.events_seen += 1
        name = experiment.get("name")
        running = self.running
        if action == "stop":
            if running is None or running.name != name:
                raise InvalidEvent(f"no experiment {name!r} is running on model key {self.key!r}; nothing to stop")
            decision = self.decide("stop", "experiment", ts, {"reason": "stopped", **running.test.status()})
            self.end_experiment({**running.test.status(), "state": "stopped"})
            return [decision]
        if running is not None:
            raise InvalidEvent(f"experiment {name!r} cannot start on model key {self.key!r}: experiment "
                               f"{running.name!r} is running there; stop it first")
        try:
            definition = ExperimentDefinition.from_mapping(experiment)
            if (definition.kind == "interleave") != (self.ranking is not None) and (
                    self.ranking is not None or self.learned or len(self.exposures)):
                raise ConfigError("interleaving compares rankers, on a model key of ranking requests; A/B tests "
                                  "and canaries compare classifiers, on a key of plain requests")
            baseline, sd = (None, None) if self.policy is None else self.policy.reward_level()
            self.running = RunningExperiment(definition, self.book, self.champion.version, self.events_seen, self.task,
                                             baseline, sd, self.config.report_every)
        except ConfigError as err:
            raise InvalidEvent(f"experiment {name!r} refused: {err}") from None
        if definition.kind == "interleave" and self.ranking is None:
            try:
                self.ranking = Rankings(self)  # the key's events will be ranking requests
            except InvalidEvent as err:
                self.running = None
                raise InvalidEvent(f"experiment {name!r} refused: {err.reason}") from None
        self._route()
        return [self.decide("start", "experiment", ts, self.running.start_evidence())]

    def _score_routed(self, x: dict, ts: int, session: str | None, source: str | None, ident: str | None) -> Exposure:
        """A request while an experiment runs: its unit's arm serves it (the champion, for the control)."""
        running = self.running
        assert running is not None
        unit = ident if running.definition.unit == "request" else session
        arm_name = running.route(unit)
        scored = False  # a request without a unit was not randomised: it is in no test
        if unit is not None:
            scored, verdict = running.test.enter(unit, arm_name)  # only a unit's first request is scored
            if verdict is not None:
                self._verdicts = [*self._verdicts, verdict]
        if arm_name == CONTROL:
            exposure = self._score(x, ts, session, source, ident, routed=False)
        else:
            arm = running.arms[arm_name]
            served = arm.predict(x)  # an arm that cannot serve a valid request: the request is rejected
            exposure = self.last_served = Exposure(x, ts, ((arm, served),), served, session, None, None, source)
        exposure.routed = (running.name, arm_name, running.epoch if scored else None)
        return exposure

    def _take_verdicts(self, ts: int) -> list[Decision]:
        """Apply the verdicts the event led to, while their experiment runs: one stopped on the
        same event (its control replaced by a promotion or a reset) has no verdict left."""
        verdicts, self._verdicts = self._verdicts, KeyExperiments._verdicts
        decisions: list[Decision] = []
        for verdict in verdicts:
            if self.running is None:
                break
            decisions += self.policy.on_experiment(self, verdict, ts)  # type: ignore[union-attr]
        return decisions

    def _learn_routed(self, exposure: Exposure, y: Any) -> tuple[Any, Any]:
        """Learning while an experiment runs: the champion first, then each live arm that served
        the request, or every live arm (``learn: all``). Return the champion's and the
        challenger's outputs for the request (``NO_OUTPUT`` where they gave none)."""
        x, outputs = exposure.x, exposure.outputs
        champion, challenger = self.champion, self.challenger
        scored = {id(arm): out for arm, out in outputs}
        everyone = self.running is None or self.running.definition.learn == "all"
        if everyone or id(champion) in scored:
            try:
                champion.model.learn_one(x, y)
            except Exception as err:
                raise champion.failure("learn", err) from None
            champion.learned += 1
        for arm in self._learners:
            if arm is not champion and (everyone or id(arm) in scored):
                self._learn_other(arm, x, y)
        c_out = scored.get(id(challenger), NO_OUTPUT) if challenger is not None else NO_OUTPUT
        return scored.get(id(champion), NO_OUTPUT), c_out

    def _observe_routed(self, exposure: Exposure, y: Any, ts: int) -> None:
        """The served arm's reward, for the experiment that routed the request."""
        running, routed = self.running, exposure.routed
        if running is None or routed is None or routed[0] != running.name:
            return  # the experiment has ended since
        loss = loss_of(self.task, y, exposure.outputs[0][1])  # type: ignore[arg-type]
        served_by = exposure.outputs[0][0]
        if served_by is not self.champion and served_by is not self.challenger:  # (theirs count in _resolve)
            served_by.recent.update(loss)  # an experiment arm's rolling metric: on the requests it served
        if routed[2] is None:
            return  # not in the test: no unit, or not its unit's first request
        reward = 1.0 - loss if self.task == "classification" else -loss
        verdict = running.test.observe(routed[1], reward, routed[2])
        if verdict is not None:
            self._verdicts = [*self._verdicts, verdict]
