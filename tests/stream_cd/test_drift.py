"""Rising-loss drift detection (issue 3, item 3): only a rise in loss is drift."""

from __future__ import annotations

import random

import pytest
from river import drift

from stream_cd.learning.drift import RisingLossDetector


def step_stream(seed: int, before: float, after: float, n: int = 3000) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < before) for _ in range(n)] + [float(rng.random() < after) for _ in range(n)]


def alarms_of(detector_update, stream: list[float]) -> list[int]:
    return [i for i, loss in enumerate(stream) if detector_update(loss)]


def raw_adwin_alarms(stream: list[float], delta: float = 0.002) -> list[int]:
    adwin = drift.ADWIN(delta=delta)
    out = []
    for i, loss in enumerate(stream):
        adwin.update(loss)
        if adwin.drift_detected:
            out.append(i)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_rise_in_loss_is_detected_soon_after_the_change(seed: int) -> None:
    stream = step_stream(seed, 0.1, 0.5)
    detector = RisingLossDetector()
    alarms = alarms_of(detector.update, stream)
    assert alarms, "no alarm on a rise from 10% to 50% error"
    assert 3000 <= alarms[0] < 3300
    assert detector.rises >= 1


@pytest.mark.parametrize("seed", range(5))
def test_a_fall_in_loss_never_fires_though_raw_adwin_does(seed: int) -> None:
    stream = step_stream(seed, 0.5, 0.1)
    raw = raw_adwin_alarms(stream)
    assert any(i >= 3000 for i in raw), "raw ADWIN is expected to fire on the fall"
    detector = RisingLossDetector()
    assert alarms_of(detector.update, stream) == []
    assert detector.rises == 0
    assert detector.falls >= 1
    # the falls it swallowed are exactly the raw ADWIN alarms on this stream
    assert detector.falls == len(raw)


def test_rises_plus_falls_equal_raw_adwin_alarms_on_a_mixed_stream() -> None:
    rng = random.Random(9)
    levels = [0.1, 0.5, 0.05, 0.4, 0.2]
    stream = [float(rng.random() < p) for p in levels for _ in range(2000)]
    detector = RisingLossDetector(delta=0.002)
    alarms = alarms_of(detector.update, stream)
    raw = raw_adwin_alarms(stream, 0.002)
    assert detector.rises == len(alarms) and detector.rises + detector.falls == len(raw)
    assert set(alarms) <= set(raw)
    # every reported alarm comes after a rise: at 2000 (0.1 -> 0.5) or 6000 (0.05 -> 0.4)
    assert alarms and all(2000 <= i < 2400 or 6000 <= i < 6400 for i in alarms)


def test_stationary_loss_stays_quiet_and_delta_is_kept() -> None:
    rng = random.Random(0)
    detector = RisingLossDetector(delta=0.0001)
    assert detector.delta == 0.0001 and detector.adwin.delta == 0.0001
    assert not any(detector.update(float(rng.random() < 0.2)) for _ in range(10_000))


def test_regression_losses_rise() -> None:
    rng = random.Random(4)
    stream = [abs(rng.gauss(0, 1)) for _ in range(3000)] + [abs(rng.gauss(0, 1)) + 2.0 for _ in range(500)]
    detector = RisingLossDetector()
    alarms = alarms_of(detector.update, stream)
    assert alarms and 3000 <= alarms[0] < 3100


def _reference_rises(losses: list[float], delta: float = 0.002) -> list[int]:
    """Rises judged by asking ADWIN for its mean before every update."""
    adwin, rises = drift.ADWIN(delta=delta), []
    for i, loss in enumerate(losses):
        before = adwin.estimation
        adwin.update(loss)
        if adwin.drift_detected and adwin.estimation > before:
            rises.append(i)
    return rises


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_mirrored_window_mean_judges_every_alarm_as_adwin_itself_would(seed: int) -> None:
    rng = random.Random(seed)
    losses: list[float] = []
    for rate in (0.1, 0.5, 0.05, 0.6, 0.2, 0.2, 0.7, 0.1):  # rises and falls, each 2,000 long
        losses += [float(rng.random() < rate) for _ in range(2000)]
    losses += [abs(rng.gauss(3 if i > 1000 else 1, 1)) for i in range(2000)]  # real-valued losses too
    detector = RisingLossDetector()
    mine = []
    for i, loss in enumerate(losses):
        if detector.update(loss):
            mine.append(i)
        if not detector.adwin.drift_detected:  # between alarms the mirror is ADWIN's window exactly
            assert detector._n == detector.adwin.width
            assert detector._sum == pytest.approx(detector.adwin.total)
    assert mine == _reference_rises(losses) and len(mine) >= 3


def test_a_detector_pickled_without_the_mirror_still_judges_by_adwin() -> None:
    rng = random.Random(3)
    losses = [float(rng.random() < 0.1) for _ in range(3000)] + [float(rng.random() < 0.5) for _ in range(3000)]
    detector = RisingLossDetector()
    for loss in losses[:1000]:
        detector.update(loss)
    del detector._n, detector._sum  # as unpickled from a checkpoint written before the mirror
    assert [i for i, loss in enumerate(losses[1000:], 1000) if detector.update(loss)][:1] == _reference_rises(losses)[:1]
