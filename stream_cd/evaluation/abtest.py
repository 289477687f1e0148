"""A/B/n tests on live traffic: each unit is served by one arm, and arms are compared with the control.

Units (users, sessions or requests) are assigned by a sticky hash of the unit
id with the experiment's name as salt (:func:`bucket`), so a unit gets the same
arm on every worker, after a rebalance and on replay. Each arm is scored on
the feedback of what it served: its reward is 1 - loss (accuracy points for
classification, minus the absolute error for regression).

The test takes one reward per unit: that of the unit's first request
(:meth:`ABExperiment.enter` says which request that is, when it is served).
A returning user's later requests are served by its arm, and the arms learn
from them, but they are not in the test: they share the user's arm and the
user's own level, so given the past they are neither random in arm nor
independent, and a test that counted them as independent would decide
falsely far more often than alpha (measured on 200 A/A tests at alpha 0.05
of 1,000 users of 50 requests each, whose accuracies spread by 0.10: 13 %
found a false winner when every request counted, none when each user's first
did: ``tests/stream_cd/evaluation/test_abtest.py``). Requests without a
unit are served by the control and are in no test: they were not
randomised. With ``unit: request`` every request is its own unit. Each arm is tested
against the control with the anytime-valid two-sample test of
:mod:`stream_cd.evaluation.twosample`, and Holm's step-down procedure on the
always-valid p-values keeps the family-wise error at ``alpha`` across arms
and over all time. The sample ratio is checked all along
(:mod:`stream_cd.evaluation.srm`): a mismatch pauses the experiment.

Verdicts: ``srm`` (paused: the control serves everyone, the results are
void); ``promote`` the best arm Holm finds better than the control; ``stop``
with "no significant difference" once ``max_sample`` units are in; ``keep``
with the status every ``report_every`` scored requests. An arm Holm finds
worse is marked so in the status and goes on being served until the end.

At start, :func:`sample_size` gives the units the sequential test needs for
the minimum detectable effect at the configured power, beside the fixed-horizon
sample size of a single look (statsmodels' ``NormalIndPower``).

>>> from stream_cd.evaluation.definition import ExperimentDefinition
>>> d = ExperimentDefinition.from_mapping({"name": "ab", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}],
...                                        "max_sample": 100_000})
>>> ab = ABExperiment(d, baseline=0.8)
>>> import random
>>> rng = random.Random(2)
>>> verdict = None
>>> while verdict is None or verdict.action == "keep":
...     unit = f"u{rng.randrange(10**9)}"
...     arm = ab.assign(unit)
...     verdict = ab.enter(unit, arm)[1] or ab.observe(arm, float(rng.random() < (0.84 if arm == "b" else 0.80)), 0)
>>> verdict.action, verdict.evidence["winner"], ab.units < ab.sample_size["units"]
('promote', 'b', True)
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from scipy.stats import norm

from stream_cd.evaluation.definition import CONTROL, ExperimentDefinition
from stream_cd.evaluation.paired import Verdict
from stream_cd.evaluation.sequential import normal_mixture_radius, normal_mixture_rho2
from stream_cd.evaluation.srm import SampleRatioTest
from stream_cd.evaluation.twosample import TwoSampleTest, holm

__all__ = ["ABExperiment", "bucket", "unit_hash", "sample_size"]

T_STAR = 20_000  # requests of a comparison where its boundary is tightest


def unit_hash(salt: str, unit: str) -> int:
    """A 64-bit hash of salt and unit, the same on every machine and run (BLAKE2b; Python's
    own ``hash`` of a string changes from one process to the next)."""
    return int.from_bytes(hashlib.blake2b(f"{salt}\x00{unit}".encode(), digest_size=8).digest(), "big")


def bucket(salt: str, unit: str) -> float:
    """A unit's place in [0, 1), the same on every machine and run.

    >>> bucket("ab-7", "u1") == bucket("ab-7", "u1") != bucket("ab-8", "u1")
    True
    """
    return unit_hash(salt, unit) / 2**64


def sample_size(mde: float, sd: float, alpha: float, power: float, share: float, pair_share: float,
                comparisons: int = 1) -> dict[str, int]:
    """Units an experiment needs to find an arm ``mde`` better than the control with ``power``.

    ``sd``: the reward's standard deviation; ``share``: the arm's share of the arm and
    the control; ``pair_share``: the two's share of all units; ``comparisons``: arms
    tested against the control (Bonferroni's alpha for the sample size).
    ``fixed_horizon_units``: one look at the end, two-sided (statsmodels). ``units``:
    the first n at which the anytime-valid confidence sequence's half-width plus
    the power's margin falls below ``mde`` (a conservative bound: crossing earlier
    counts too).

    >>> sample_size(0.02, 0.4, 0.05, 0.8, 0.5, 1.0)
    {'units': 24067, 'fixed_horizon_units': 12559}
    """
    from statsmodels.stats.power import NormalIndPower  # here: it takes half a second to import, and a worker starts often

    a = alpha / comparisons
    fixed = NormalIndPower().solve_power(effect_size=mde / sd, alpha=a, power=power, ratio=(1 - share) / share,
                                         alternative="two-sided")
    sd_phi = sd * math.sqrt(1 / share + 1 / (1 - share))
    rho2 = normal_mixture_rho2(T_STAR, a)
    z_power = float(norm.ppf(power))

    def short(n: int) -> bool:
        return float(normal_mixture_radius(n, sd_phi, a, rho2)) + z_power * sd_phi / math.sqrt(n) > mde

    lo, hi = 2, 4
    while short(hi):
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if short(mid) else (lo, mid)
    return {"units": math.ceil(hi / pair_share), "fixed_horizon_units": math.ceil(fixed / share / pair_share)}


class ABExperiment:
    """An A/B/n test of one model key (see the module docstring)."""

    kind = "ab"

    def __init__(self, definition: ExperimentDefinition, baseline: float | None = None, sd: float | None = None,
                 report_every: int = 5000) -> None:
        d = self.definition = definition
        self.name = d.name
        self.report_every = report_every
        total = sum(d.weights)
        self.shares = {arm: w / total for arm, w in zip(d.arm_names, d.weights)}
        self.layout: list[tuple[float, str]] = []  # (upper end of the arm's range in [0, 1), arm)
        upper = 0.0
        for arm in d.arm_names:
            upper += self.shares[arm]
            self.layout.append((upper, arm))
        self.layout[-1] = (1.0, self.layout[-1][1])
        others = d.arm_names[1:]
        self.tests = {arm: TwoSampleTest(d.alpha, T_STAR) for arm in others}
        self.srm = SampleRatioTest(list(d.weights))
        self.units = 0
        self.arm_index = {arm: i for i, arm in enumerate(d.arm_names)}
        self.seen: set[int] = set()  # units already counted (their hashes), at most max_sample
        self.scored = 0
        self.state = "running"
        if sd is None:
            p = 0.8 if baseline is None else min(max(baseline, 0.05), 0.95)
            sd = math.sqrt(p * (1 - p))  # a Bernoulli reward: accuracy or click-through
        control = self.shares[CONTROL]
        sizes = [sample_size(d.mde, sd, d.alpha, d.power, self.shares[a] / (self.shares[a] + control),
                             self.shares[a] + control, comparisons=len(others)) for a in others]
        self.sample_size = {"units": max(s["units"] for s in sizes),
                            "fixed_horizon_units": max(s["fixed_horizon_units"] for s in sizes), "sd": sd}

    def assign(self, unit: str) -> str:
        """The arm that serves ``unit`` (the control while paused)."""
        if self.state != "running":
            return CONTROL
        place = bucket(self.name, unit)
        for upper, arm in self.layout:
            if place < upper:
                return arm
        return self.layout[-1][1]

    def enter(self, unit: str, arm: str) -> tuple[bool, Verdict | None]:
        """A request of ``unit``, served by ``arm``: whether it is the unit's first (the one
        the test scores), and the verdict its counting leads to. The first time a unit
        is served it is counted; a sample-ratio mismatch pauses the experiment."""
        if self.state != "running":
            return False, None
        key = unit_hash(self.name, unit)
        if key in self.seen or len(self.seen) >= self.definition.max_sample:
            return False, None
        self.seen.add(key)
        self.units += 1
        if self.srm.update(self.arm_index[arm]):
            self.state = "paused"
            return True, Verdict("hold", {"reason": "sample ratio mismatch: the assignment is broken, the results void",
                                          **self.srm.evidence(), **self.status()})
        if self.units >= self.definition.max_sample:
            self.state = "done"
            return True, Verdict("stop", {"reason": "no significant difference", **self.status()})
        return True, None

    def observe(self, arm: str, reward: float, epoch: int = 0) -> Verdict | None:
        """The reward of a request ``arm`` served; a verdict when one is due."""
        if self.state != "running":
            return None
        control = self.shares[CONTROL]
        if arm == CONTROL:  # a control request counts in every comparison
            for other, test in self.tests.items():
                test.update(reward, False, self.shares[other] / (self.shares[other] + control))
        else:
            self.tests[arm].update(reward, True, self.shares[arm] / (self.shares[arm] + control))
        self.scored += 1
        winner = self.winner()
        if winner is not None:
            self.state = "done"
            return Verdict("promote", {"winner": winner, **self.status()})
        if self.scored % self.report_every == 0:
            return Verdict("keep", self.status())
        return None

    def winner(self) -> str | None:
        """The best arm Holm's procedure finds better than the control, if any.

        Holm runs only once some arm's own test has crossed (at ``alpha``): Holm can
        reject nothing before that, and the common case costs nothing."""
        if not any(t.decision > 0 for t in self.tests.values()):
            return None
        p_values = {arm: min(1.0, math.exp(-t.test.best_better)) for arm, t in self.tests.items()}
        better = [arm for arm in holm(p_values, self.definition.alpha) if self.tests[arm].test.mean > 0]
        return max(better, key=lambda arm: self.tests[arm].test.mean) if better else None

    def traffic(self) -> dict[str, float]:
        return {arm: (CONTROL == arm) * 1.0 if self.state == "paused" else share for arm, share in self.shares.items()}

    def status(self) -> dict[str, Any]:
        """Everything the experiment knows: arms, traffic, units and requests per arm, each arm's
        metric with its confidence sequence, the comparisons, the sample size, the state."""
        arms: dict[str, Any] = {}
        for arm, test in self.tests.items():
            e = test.evidence()
            arms[arm] = {"requests": e["arm"]["n"], "metric": e["arm"]["mean"], "ci": e["arm"]["ci"],
                         "difference": e["difference"], "difference_ci": e["ci"], "p_value": e["p_value"],
                         "p_value_worse": e["p_value_worse"],
                         "verdict": {1: "better", -1: "worse", 0: None}[test.decision]}
            arms.setdefault(CONTROL, {"requests": e["control"]["n"], "metric": e["control"]["mean"],
                                      "ci": e["control"]["ci"]})
        units = dict(zip(self.definition.arm_names, self.srm.counts))
        needed = max(self.sample_size["units"] - self.units, 0)
        return {"experiment": self.name, "kind": self.kind, "state": self.state, "traffic": self.traffic(),
                "units": units, "arms": arms, "alpha": self.definition.alpha, "correction": "holm",
                "sample_size": self.sample_size, "units_still_needed": needed,
                "srm_p_value": self.srm.evidence()["p_value"]}
