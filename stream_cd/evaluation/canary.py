"""Canary releases: a new model serves a growing share of units while it holds up.

The canary serves the units whose place (:func:`~stream_cd.evaluation.abtest.bucket`)
falls below the current step's share of the ramp (default 1, 5, 25, 50, 100 %),
so a unit that has seen the canary keeps seeing it as the share grows. At each
step a fresh anytime-valid two-sample test (:mod:`stream_cd.evaluation.twosample`)
compares the canary with the champion on the rewards of what each served:

* it *advances* once the canary has served ``step_min_sample`` requests at the
  step and the lower confidence bound of canary minus champion is above
  ``-guardrail_margin`` (shown not worse by more than the margin: a sequential
  non-inferiority test);
* it *rolls back* to 0 % at once when the canary is shown worse than the
  champion (the upper bound below 0);
* reaching 100 % it is promoted (through the forgetting guard).

Each step's test runs at ``alpha / steps`` (Bonferroni over the steps that
decide), so the probability of any wrong advance or rollback over the whole
ramp is at most ``alpha``. A request served at an earlier step counts only in
that step's test (its share was that step's). As in an A/B test
(:mod:`stream_cd.evaluation.abtest`), each step's test takes one reward per
unit, that of the unit's first request at the step; the units a step has seen
are kept in fixed memory (:class:`~stream_cd.evaluation.first_seen.FirstSeen`),
however long it runs.

A rollback needs only the "worse" side of the step's confidence sequence to
cross, even after its "better" side has: a canary that did well early and then
fell off is rolled back all the same.

>>> from stream_cd.evaluation.definition import ExperimentDefinition
>>> d = ExperimentDefinition.from_mapping({"name": "c1", "kind": "canary", "arms": [{"name": "new", "spec": "logreg"}],
...                                        "guardrail_margin": 0.05, "step_min_sample": 300})
>>> canary = CanaryExperiment(d)
>>> import random
>>> rng = random.Random(5)
>>> steps = []
>>> while canary.state == "running":
...     unit = f"u{rng.randrange(10**9)}"
...     arm = canary.assign(unit)
...     verdict = canary.observe(arm, float(rng.random() < 0.8), canary.step)
...     if verdict and verdict.action != "keep":
...         steps.append((verdict.action, verdict.evidence["traffic"]["new"]))
>>> steps
[('ramp', 0.05), ('ramp', 0.25), ('ramp', 0.5), ('promote', 1.0)]
"""

from __future__ import annotations

from typing import Any

from stream_cd.evaluation.abtest import bucket, unit_hash
from stream_cd.evaluation.definition import CONTROL, ExperimentDefinition
from stream_cd.evaluation.first_seen import FirstSeen
from stream_cd.evaluation.paired import Verdict
from stream_cd.evaluation.twosample import TwoSampleTest

__all__ = ["CanaryExperiment"]

CHECK_EVERY = 50  # requests between looks at the confidence sequence: any subsequence stays valid


class CanaryExperiment:
    """A canary of one model key (see the module docstring)."""

    kind = "canary"

    def __init__(self, definition: ExperimentDefinition, report_every: int = 5000) -> None:
        self.definition = d = definition
        self.name = d.name
        self.arm = d.arms[0][0]
        self.report_every = report_every
        self.ramp = [share / 100 for share in d.ramp]
        self.step_alpha = d.alpha / max(len(self.ramp) - 1, 1)
        self.step = 0
        self.test = TwoSampleTest(self.step_alpha)
        self.history: list[dict[str, Any]] = []  # each finished step's evidence
        self.state = "running"
        self.scored = 0
        self.units = FirstSeen()  # the units of the current step seen so far

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "units" not in state:  # pickled before canaries counted their units
            self.units = FirstSeen()

    @property
    def share(self) -> float:
        return 0.0 if self.state == "rolled back" else self.ramp[self.step]

    def assign(self, unit: str) -> str:
        return self.arm if bucket(self.name, unit) < self.share else CONTROL

    def enter(self, unit: str, arm: str) -> tuple[bool, Verdict | None]:
        """A request of ``unit``: whether it is the unit's first at this step (the one the
        step's test scores). The ramp sets the split, so there is no sample ratio to check."""
        if self.state != "running":
            return False, None
        return self.units.first(unit_hash(self.name, unit)), None

    def observe(self, arm: str, reward: float, epoch: int) -> Verdict | None:
        """The reward of a request ``arm`` served at step ``epoch``; a verdict when one is due."""
        if self.state != "running" or epoch != self.step:
            return None
        test = self.test
        test.update(reward, arm == self.arm, self.share)
        self.scored += 1
        if test.shown_worse:
            self.state = "rolled back"
            return Verdict("rollback", {"reason": "the canary is worse than the champion", **self.status()})
        if test.counts[1] >= self.definition.step_min_sample and test.n % CHECK_EVERY == 0 \
                and test.lower_bound() > -self.definition.guardrail_margin:
            return self._advance()
        if self.scored % self.report_every == 0:
            return Verdict("keep", self.status())
        return None

    def _advance(self) -> Verdict:
        self.history.append({"share": self.share, **self.test.evidence()})
        self.step += 1
        self.test = TwoSampleTest(self.step_alpha)
        self.units = FirstSeen()
        if self.ramp[self.step] >= 1.0:
            self.state = "done"
            return Verdict("promote", {"winner": self.arm, **self.status()})
        return Verdict("ramp", self.status())

    def traffic(self) -> dict[str, float]:
        return {CONTROL: 1.0 - self.share, self.arm: self.share}

    def status(self) -> dict[str, Any]:
        e = self.test.evidence()
        return {"experiment": self.name, "kind": self.kind, "state": self.state, "step": self.step,
                "ramp": [r * 100 for r in self.ramp], "traffic": self.traffic(),
                "guardrail_margin": self.definition.guardrail_margin, "step_alpha": self.step_alpha,
                "arms": {CONTROL: e["control"], self.arm: {**e["arm"], "difference": e["difference"],
                                                           "difference_ci": e["ci"]}},
                "steps": self.history}
