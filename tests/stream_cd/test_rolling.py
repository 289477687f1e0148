"""Each arm's rolling metric: the mean follows a change at once, survives pickling, reaches the decisions."""

from __future__ import annotations

import pickle
import random

from stream_cd.config import PipelineConfig
from stream_cd.learning.arms import Arm
from stream_cd.learning.rolling import RollingLoss
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.versions import Version
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.datasets import generate

import orjson


def test_the_rolling_mean_stays_close_to_the_exact_window_mean_across_a_change() -> None:
    rng = random.Random(3)
    losses = [float(rng.random() < (0.1 if i < 5000 else 0.4)) for i in range(10_000)]
    rolling = RollingLoss(window=1000)
    worst = 0.0
    for i, loss in enumerate(losses):
        rolling.update(loss)
        if i >= 999:
            exact = sum(losses[i - 999 : i + 1]) / 1000
            worst = max(worst, abs(rolling.mean - exact))  # type: ignore[operator]
    assert worst < 0.06  # the binomial noise of a block mean of 1,000 is about 0.015 each
    assert abs(rolling.mean - 0.4) < 0.05 and rolling.scored == 10_000  # type: ignore[operator]


def test_an_arm_pickled_before_it_kept_recent_losses_loads_with_an_empty_record() -> None:
    arm = Arm("champion", ModelSpec.parse("logreg"), Version(1))
    arm.recent.update(1.0)
    state = (None, {name: getattr(arm, name) for name in Arm.__slots__ if name != "recent"})
    old = object.__new__(Arm)
    old.__setstate__(state)
    assert old.recent.mean is None and old.label == "v1.0"
    again = pickle.loads(pickle.dumps(arm))
    assert again.recent.mean == 1.0


def test_decisions_carry_every_arms_rolling_metric_and_it_shows_the_drift() -> None:
    pipeline = Pipeline(PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="none", version_every=1000))
    decisions = []
    for i, event in enumerate(generate("agrawal", n=12_000, seed=5, drift_at=6000)):
        decisions += pipeline.process(orjson.dumps(event), ts=0, offset=i).decisions
    checkpoints = [d for d in decisions if d.action == "checkpoint"]
    assert len(checkpoints) == 12
    rolling = [d.evidence["rolling"] for d in checkpoints]
    assert all(r["metric"] == "Accuracy" and r["window"] == 1000 for r in rolling)
    assert set(rolling[0]["arms"]) == {"champion", "challenger"}
    champion = [r["arms"]["champion"]["value"] for r in rolling]
    before, after = sum(champion[3:6]) / 3, champion[6]  # at 6,000 the window is all old concept; at 7,000 all new
    assert before - after > 0.1, champion
