"""Pipeline configuration: one frozen object, checked when it is made.

>>> cfg = PipelineConfig.from_mapping({"model": "logreg", "shadow": "hoeffding-tree"})
>>> cfg.model, cfg.shadow, cfg.drift, cfg.on_drift
('logreg', 'hoeffding-tree', 'adwin', 'challenge')
>>> PipelineConfig.from_mapping({"modle": "logreg"})
Traceback (most recent call last):
...
stream_cd.errors.ConfigError: unknown configuration key 'modle'; known keys: alpha, drift, drift_delta, drop_budget, feedback_default, feedback_ttl_s, forgetting, max_event_bytes, max_pending, max_sessions, min_sample, model, on_drift, range_guard, range_warmup, reference_size, report_every, session_adaptation, session_ttl_s, shadow, source_cap, source_window, task, triggers, version_every
>>> PipelineConfig(alpha=1.5)
Traceback (most recent call last):
...
stream_cd.errors.ConfigError: alpha 1.5 must lie strictly between 0 and 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from stream_cd.errors import ConfigError
from stream_cd.events import DEFAULT_MAX_EVENT_BYTES
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.tasks import TASKS
from stream_cd.learning.triggers import TriggerSettings

__all__ = ["PipelineConfig"]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that shapes how each model key learns and is judged.

    Parameters
    ----------
    task
        ``classification``, ``regression`` or ``auto`` (the preset's task, else inferred from the first label).
    model
        Champion spec: a preset or ``package.module:factory``.
    shadow
        Challenger spec scored on the same stream, or ``none``.
    drift
        ``adwin`` (rising-loss ADWIN on the champion's loss) or ``none``.
    on_drift
        ``challenge``: the retrain becomes the challenger; ``reset``: it replaces the champion at once.
    drift_delta
        ADWIN's delta.
    alpha, min_sample, drop_budget, report_every
        Shadow experiment (:mod:`stream_cd.evaluation.paired`): the anytime-valid test's
        level (the probability of ever promoting a challenger that is not better), pairs
        before it may decide, pairs after which a challenger not shown better is dropped
        (None: never), pairs between the ``keep`` decisions that report on it.
    triggers
        Time, performance and volume triggers.
    version_every
        Labeled events between version checkpoints: the champion's and challenger's
        MINOR is bumped and a ``checkpoint`` decision published (None: never).
    source_cap, source_window
        Poisoning guard: at most ``source_cap`` (a fraction) of the last ``source_window``
        learned events from any one ``source`` (None: off).
    range_guard, range_warmup
        Poisoning guard: hold back events with a numeric feature more than ``range_guard``
        times its learned range outside it, once that feature has been learned ``range_warmup`` times
        and has shown a range (None: off).
    session_adaptation, max_sessions, session_ttl_s
        Cold-start adaptation of predictions to each ``session`` from its own feedback (on by
        default; it only acts on events that carry a session), at most ``max_sessions`` per
        model key (least recently active evicted), a session idle ``session_ttl_s`` seconds of
        event time starting fresh.
    forgetting, reference_size
        The forgetting guard (:mod:`stream_cd.evaluation.forgetting`): before any promotion
        the candidate is checked against the champion on a reservoir of ``reference_size``
        older labeled events; ``warn`` publishes the evidence with the promotion, ``block``
        holds a candidate that has forgotten back, ``off`` skips the check.
    max_pending, feedback_ttl_s, feedback_default
        Delayed feedback (:mod:`stream_cd.serving.exposures`): requests waiting for their
        feedback per model key, and their age in event-time seconds (None: no limit),
        before they expire; the label an expired request is learned with (None: it is
        only counted).
    max_event_bytes
        Larger messages are invalid.
    """

    task: str = "auto"
    model: str = "logreg"
    shadow: str = "none"
    drift: str = "adwin"
    on_drift: str = "challenge"
    drift_delta: float = 0.002
    alpha: float = 0.01
    min_sample: int = 1000
    drop_budget: int | None = 50_000
    report_every: int = 5000
    triggers: TriggerSettings = field(default_factory=TriggerSettings)
    version_every: int | None = 10_000
    source_cap: float | None = None
    source_window: int = 1000
    range_guard: float | None = None
    range_warmup: int = 100
    session_adaptation: bool = True
    max_sessions: int = 10_000
    session_ttl_s: float | None = 1800.0
    forgetting: str = "warn"
    reference_size: int = 2000
    max_pending: int = 100_000
    feedback_ttl_s: float | None = 86_400.0
    feedback_default: bool | int | float | str | None = None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    def __post_init__(self) -> None:
        _choice("task", self.task, TASKS)
        _choice("drift", self.drift, ("adwin", "none"))
        _choice("on_drift", self.on_drift, ("challenge", "reset"))
        _choice("forgetting", self.forgetting, ("warn", "block", "off"))
        ModelSpec.parse(self.model)
        if self.shadow != "none":
            ModelSpec.parse(self.shadow)
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha {self.alpha} must lie strictly between 0 and 1")
        if not 0 < self.drift_delta < 1:
            raise ConfigError(f"drift_delta {self.drift_delta} must lie strictly between 0 and 1")
        for name in ("min_sample", "drop_budget", "report_every", "max_event_bytes", "max_pending",
                     "source_window", "range_warmup", "version_every", "max_sessions", "reference_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)} must be at least 1")
        if self.source_cap is not None and not 0 < self.source_cap <= 1:
            raise ConfigError(f"source_cap {self.source_cap} must be a fraction in (0, 1]")
        if self.session_ttl_s is not None and not self.session_ttl_s > 0:
            raise ConfigError(f"session_ttl_s {self.session_ttl_s} must be positive (or None for no TTL)")
        if self.range_guard is not None and not self.range_guard > 0:
            raise ConfigError(f"range_guard {self.range_guard} must be positive")
        if self.feedback_ttl_s is not None and not self.feedback_ttl_s > 0:
            raise ConfigError(f"feedback_ttl_s {self.feedback_ttl_s} must be positive (or None for no TTL)")
        if self.feedback_default is not None and type(self.feedback_default) not in (bool, int, float, str):
            raise ConfigError(f"feedback_default {self.feedback_default!r} must be a label: a boolean, number or string")
        if self.drop_budget is not None and self.drop_budget < self.min_sample:
            raise ConfigError(f"drop_budget {self.drop_budget} is smaller than min_sample {self.min_sample}: "
                              "a challenger would be dropped before it could be promoted; make it at least as large")
        every = self.triggers.volume_every
        if every is not None and every < self.min_sample:
            raise ConfigError(f"volume trigger every {every} events is fewer than min_sample {self.min_sample}: each "
                              "retrain would replace the challenger before its test could decide; make it at least "
                              "min_sample, or lower min_sample")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "PipelineConfig":
        """Build from a mapping, rejecting keys that are not settings."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown configuration key {key!r}; known keys: {', '.join(sorted(known))}")
        values = dict(values)
        if isinstance(values.get("triggers"), Mapping):
            trigger_known = {f.name for f in fields(TriggerSettings)}
            for key in values["triggers"]:
                if key not in trigger_known:
                    raise ConfigError(f"unknown trigger setting {key!r}; known: {', '.join(sorted(trigger_known))}")
            values["triggers"] = TriggerSettings(**values["triggers"])
        return cls(**values)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(allowed)}")
