"""Experiment definitions: what a ``start`` control message asks for, checked whole.

An experiment is defined by a control message in the events topic itself,
keyed by its model key, so that it takes effect at one definite point of that
key's stream on every worker, after a rebalance and on replay::

    {"key": "shop", "control": "start", "experiment": {"name": "ab-7", "kind": "ab",
     "arms": [{"name": "b", "spec": "hoeffding-tree"}], "weights": [50, 50], "unit": "user"}}
    {"key": "shop", "control": "stop", "experiment": {"name": "ab-7"}}

The champion is the control, arm ``control``; ``weights`` (A/B/n) give the
control's share first, then each arm's. An ``interleave`` experiment (on a key of
ranking requests) has one arm, whose rankings are team-drafted with the
champion's on every request (:mod:`stream_cd.evaluation.interleave`). A definition that is not valid is
refused whole with a reason naming the bad value, at the command and again by
the worker (a dead letter), and nothing of it is applied.

>>> d = ExperimentDefinition.from_mapping({"name": "ab-7", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}]})
>>> d.weights, d.unit, d.alpha, d.arm_names
((50.0, 50.0), 'user', 0.05, ('control', 'b'))
>>> ExperimentDefinition.from_mapping({"name": "x", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}],
...                                    "weights": [50, 30, 20]})
Traceback (most recent call last):
...
stream_cd.errors.ConfigError: experiment 'x': 3 weights for 2 arms (the control and 1 more); give one weight per arm, the control's first
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from stream_cd.errors import ConfigError
from stream_cd.learning.specs import ModelSpec

__all__ = ["ExperimentDefinition", "KINDS", "UNITS", "CONTROL"]

KINDS = ("ab", "canary", "interleave")
UNITS = ("user", "session", "request")
CONTROL = "control"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ExperimentDefinition:
    """A checked experiment definition (see the module docstring).

    Parameters
    ----------
    name, kind
        A name unique within the model key; ``ab`` (A/B/n), ``canary`` or ``interleave``.
    arms
        ``(name, spec)`` of each arm besides the control (the champion). A canary and an
        interleaving experiment have one.
    weights
        A/B/n: the control's share, then each arm's (default equal).
    unit
        What is assigned to an arm and stays there: ``user``, ``session`` or ``request``.
    alpha, mde, power
        The tests' family-wise level; the minimum detectable effect (in the metric: accuracy
        points, or absolute error) and the power the sample size at start is computed for.
    max_sample
        Units (A/B/n), or impressions (interleave), after which an experiment without a significant
        result ends with "no significant difference".
    ramp, guardrail_margin, step_min_sample
        Canary: the shares in percent it steps through; how much worse than the champion it may be
        and still advance; requests of the canary at a step before it may advance.
    learn
        ``all``: every arm learns from every labeled event (each is trained as it would be as
        champion); ``own``: an arm learns only from the feedback of what it served.
    """

    name: str
    kind: str
    arms: tuple[tuple[str, str], ...]
    weights: tuple[float, ...] = ()
    unit: str = "user"
    alpha: float = 0.05
    mde: float = 0.02
    power: float = 0.8
    max_sample: int = 200_000
    ramp: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
    guardrail_margin: float = 0.02
    step_min_sample: int = 500
    learn: str = "all"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def arm_names(self) -> tuple[str, ...]:
        return (CONTROL, *(name for name, _ in self.arms))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ExperimentDefinition":
        if not isinstance(values, Mapping):
            raise ConfigError(f"experiment is {type(values).__name__}; it must be an object")
        known = {f.name for f in fields(cls)} - {"extra"}
        name = values.get("name")
        if type(name) is not str or not _NAME.fullmatch(name):
            raise ConfigError(f"experiment name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-'")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"experiment {name!r}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        kind = values.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"experiment {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        arms = _arms(name, values.get("arms"))
        if kind == "canary" and len(arms) != 1:
            raise ConfigError(f"experiment {name!r}: a canary has exactly one arm, not {len(arms)}")
        if kind == "interleave" and len(arms) != 1:
            raise ConfigError(f"experiment {name!r}: an interleaving experiment has exactly one arm, not {len(arms)}: "
                              "team-draft interleaving compares the champion with one challenger")
        if kind == "interleave" and values.get("weights"):
            raise ConfigError(f"experiment {name!r}: weights are for A/B/n tests; an interleaving experiment shows "
                              "both rankers in every list")
        settings = {k: values[k] for k in known & set(values) if k not in ("name", "kind", "arms")}
        for key in ("weights", "ramp"):
            if key in settings:
                settings[key] = _numbers(name, key, settings[key])
        definition = cls(name=name, kind=kind, arms=arms, **settings)
        definition._check()
        return definition

    def _check(self) -> None:
        n = len(self.arms) + 1
        where = f"experiment {self.name!r}"
        if self.kind == "ab":
            if not self.weights:
                object.__setattr__(self, "weights", tuple(100.0 / n for _ in range(n)))
            if len(self.weights) != n:
                raise ConfigError(f"{where}: {len(self.weights)} weights for {n} arms (the control and {n - 1} more); "
                                  "give one weight per arm, the control's first")
            if min(self.weights) <= 0:
                raise ConfigError(f"{where}: weights {list(self.weights)} must all be positive")
        if self.unit not in UNITS:
            raise ConfigError(f"{where}: unit {self.unit!r} is not one of {', '.join(UNITS)}")
        for key, low, high in (("alpha", 0, 1), ("power", 0, 1)):
            if not low < getattr(self, key) < high:
                raise ConfigError(f"{where}: {key} {getattr(self, key)} must lie strictly between 0 and 1")
        for key in ("mde", "guardrail_margin"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{where}: {key} {getattr(self, key)} must be positive")
        for key in ("max_sample", "step_min_sample"):
            if type(getattr(self, key)) is not int or getattr(self, key) < 1:
                raise ConfigError(f"{where}: {key} {getattr(self, key)!r} must be a whole number of at least 1")
        ramp = self.ramp
        if not ramp or any(b <= a for a, b in zip(ramp, ramp[1:])) or ramp[0] <= 0 or ramp[-1] != 100:
            raise ConfigError(f"{where}: ramp {list(ramp)} must rise strictly from above 0 to 100 (percent)")
        if self.learn not in ("all", "own"):
            raise ConfigError(f"{where}: learn {self.learn!r} is not one of all, own")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["arms"] = [{"name": n, "spec": s} for n, s in self.arms]
        out["weights"], out["ramp"] = list(self.weights), list(self.ramp)
        return out


def _arms(name: str, arms: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(arms, list) or not arms:
        raise ConfigError(f"experiment {name!r}: arms must be a non-empty list of {{\"name\": ..., \"spec\": ...}}")
    out = []
    for arm in arms:
        if not isinstance(arm, Mapping) or set(arm) != {"name", "spec"}:
            raise ConfigError(f"experiment {name!r}: each arm is {{\"name\": ..., \"spec\": ...}}, not {arm!r}")
        arm_name, spec = arm["name"], arm["spec"]
        if type(arm_name) is not str or not _NAME.fullmatch(arm_name) or arm_name == CONTROL:
            raise ConfigError(f"experiment {name!r}: arm name {arm_name!r} must be a plain name other than {CONTROL!r}")
        if type(spec) is not str:
            raise ConfigError(f"experiment {name!r}: arm {arm_name!r} spec {spec!r} must be a string")
        ModelSpec.parse(spec)  # an unknown spec is refused here, before anything is applied
        out.append((arm_name, spec))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"experiment {name!r}: arm names {names} must be distinct")
    return tuple(out)


def _numbers(name: str, key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not all(type(v) in (int, float) for v in value):
        raise ConfigError(f"experiment {name!r}: {key} {value!r} must be a list of numbers")
    return tuple(float(v) for v in value)
