"""Update triggers (issue 3, item 7): time, performance and volume."""

from __future__ import annotations

import pytest

from stream_cd.errors import ConfigError
from stream_cd.learning.triggers import PerformanceTrigger, TimeTrigger, TriggerSettings, VolumeTrigger, build_triggers


def test_time_trigger_fires_every_period_of_event_time() -> None:
    t = TimeTrigger(every_s=10)
    ts = [0, 5_000, 9_999, 10_000, 12_000, 20_000, 55_000, 56_000, 60_000]
    assert [s for s in ts if t.observe(s, 0, 0.0)] == [10_000, 20_000, 55_000, 60_000]


def test_time_trigger_starts_at_the_first_event_time() -> None:
    t = TimeTrigger(every_s=1)
    assert not t.observe(1_732_600_000_000, 1, 0.0)
    assert not t.observe(1_732_600_000_999, 2, 0.0)
    assert t.observe(1_732_600_001_000, 3, 0.0)


def test_performance_trigger_classification_fires_below_threshold_then_waits_a_window() -> None:
    perf = PerformanceTrigger(threshold=0.8, window=10)
    losses = [0.0] * 20 + [1.0] * 20
    assert [i for i, loss in enumerate(losses) if perf.observe(0, i, loss)] == [22, 32]


def test_performance_trigger_regression_fires_above_mae_threshold() -> None:
    perf = PerformanceTrigger(threshold=2.0, window=5, higher_is_better=False)
    losses = [1.0] * 10 + [3.0] * 10
    fired = [i for i, loss in enumerate(losses) if perf.observe(0, i, loss)]
    # mean of the last 5 exceeds 2.0 once three of them are 3.0 (index 12), then after a fresh window
    assert fired == [12, 17]


def test_volume_every_and_growth() -> None:
    every = VolumeTrigger(every=250)
    assert [n for n in range(1, 1001) if every.observe(0, n, 0.0)] == [250, 500, 750, 1000]
    growth = VolumeTrigger(growth_pct=100)
    # the base is the first count seen; fires when the data has doubled since the last firing
    assert [n for n in range(1, 40) if growth.observe(0, n, 0.0)] == [2, 4, 8, 16, 32]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: TimeTrigger(0), "period must be positive"),
        (lambda: TimeTrigger(-5), "-5"),
        (lambda: PerformanceTrigger(0.5, window=0), "window 0"),
        (lambda: VolumeTrigger(), "exactly one"),
        (lambda: VolumeTrigger(every=10, growth_pct=5), "exactly one"),
        (lambda: VolumeTrigger(every=0), "every 0"),
        (lambda: VolumeTrigger(growth_pct=-1), "growth -1"),
    ],
)
def test_bad_trigger_settings_are_config_errors(make, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        make()


def test_build_triggers_from_settings() -> None:
    assert build_triggers(TriggerSettings(), "classification") == []
    triggers = build_triggers(
        TriggerSettings(every_s=60, performance_below=0.7, performance_window=50, volume_growth_pct=25), "regression"
    )
    assert [t.name for t in triggers] == ["time", "performance", "volume"]
    time_t, perf, vol = triggers
    assert time_t.every_ms == 60_000
    assert perf.threshold == 0.7 and perf.window == 50 and perf.higher_is_better is False
    assert vol.growth_pct == 25 and vol.every is None
    (perf_c,) = build_triggers(TriggerSettings(performance_below=0.7), "classification")
    assert perf_c.higher_is_better is True and perf_c.window == 1000
    # each call gives fresh triggers with their own state
    a, b = (build_triggers(TriggerSettings(volume_every=2), "classification")[0] for _ in range(2))
    a.observe(0, 2, 0.0)
    assert a.base == 2 and b.base == 0
