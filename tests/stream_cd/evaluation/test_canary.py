"""Canary releases by simulation: a worse canary rolls back early, an equal or better one
reaches 100 % and is promoted; the ramp survives a checkpoint."""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor

from stream_cd.evaluation.canary import CanaryExperiment
from stream_cd.evaluation.definition import ExperimentDefinition
from stream_cd.state.pickling import dumps, loads

DEFINITION = ExperimentDefinition.from_mapping({"name": "canary", "kind": "canary",
                                                "arms": [{"name": "new", "spec": "logreg"}]})


def ramp_run(args: tuple[int, float, float]) -> tuple[list[tuple[str, float]], int]:
    """The (action, canary share) of each ramp decision of one canary, and the requests it took."""
    seed, champion_rate, canary_rate = args
    canary = CanaryExperiment(DEFINITION, report_every=10**9)
    rng = random.Random(seed)
    steps: list[tuple[str, float]] = []
    requests = 0
    while canary.state == "running" and requests < 3_000_000:
        requests += 1
        arm = canary.assign(f"u{rng.getrandbits(40)}")
        rate = canary_rate if arm == "new" else champion_rate
        verdict = canary.observe(arm, float(rng.random() < rate), canary.step)
        if verdict is not None:
            steps.append((verdict.action, verdict.evidence["traffic"]["new"]))
    return steps, requests


def runs(champion: float, canary: float, n: int, seed: int) -> list:
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(ramp_run, [(seed * 1000 + i, champion, canary) for i in range(n)]))


def test_a_canary_5_points_worse_is_rolled_back_before_it_reaches_25_percent() -> None:
    results = runs(0.80, 0.75, 50, seed=1)
    ends = [steps[-1] for steps, _ in results]
    reached = [max([share for action, share in steps if action == "ramp"], default=0.01) for steps, _ in results]
    print(f"\nworse by 5 points: {sum(a == 'rollback' for a, _ in ends)} of 50 rolled back, the highest share "
          f"reached {max(reached):.0%}, median requests {sorted(r for _, r in results)[25]:,}")
    assert all(action == "rollback" for action, _ in ends)
    assert max(reached) < 0.25


def test_an_equal_or_better_canary_reaches_100_percent_and_is_promoted() -> None:
    for champion, canary, n in ((0.80, 0.80, 10), (0.80, 0.83, 20)):
        results = runs(champion, canary, n, seed=2)
        promoted = [steps for steps, _ in results if steps and steps[-1] == ("promote", 1.0)]
        print(f"\ncanary at {canary:.0%} against {champion:.0%}: {len(promoted)} of {n} promoted at 100 %, "
              f"median requests {sorted(r for _, r in results)[n // 2]:,}")
        assert all(steps == [("ramp", 0.05), ("ramp", 0.25), ("ramp", 0.5), ("promote", 1.0)] for steps in promoted)
        assert len(promoted) >= (n if canary > champion else n - 1)


def test_the_ramp_state_survives_a_checkpoint_and_goes_on_identically() -> None:
    canary = CanaryExperiment(DEFINITION, report_every=10**9)
    rng = random.Random(3)

    def feed(c: CanaryExperiment, r: random.Random, until) -> list:
        out = []
        while c.state == "running" and not until(c):
            arm = c.assign(f"u{r.getrandbits(40)}")
            verdict = c.observe(arm, float(r.random() < 0.8), c.step)
            if verdict is not None:
                out.append((verdict.action, c.step))
        return out

    feed(canary, rng, lambda c: c.step == 2)  # at the 25 % step
    restored, rng_copy = loads(dumps(canary)), random.Random()
    rng_copy.setstate(rng.getstate())
    assert restored.step == 2 and restored.share == 0.25
    assert feed(restored, rng_copy, lambda c: False) == feed(canary, rng, lambda c: False)
    assert canary.state == restored.state == "done"


def test_a_canary_that_did_well_at_first_and_then_falls_off_is_rolled_back() -> None:
    """Its step's test crosses "better" on the early requests; the later ones show it worse,
    and that crossing rolls it back all the same."""
    canary = CanaryExperiment(DEFINITION, report_every=10**9)
    rng = random.Random(11)
    crossed_better_at = None
    for i in range(400_000):
        arm = canary.assign(f"u{i}")
        rate = (0.95 if i < 20_000 else 0.50) if arm == "new" else 0.80
        canary.observe(arm, float(rng.random() < rate), canary.step)
        if crossed_better_at is None and canary.test.decision == 1:
            crossed_better_at = i
        if canary.state != "running":
            break
    assert crossed_better_at is not None and crossed_better_at < 20_000
    assert canary.state == "rolled back" and canary.step == 0 and i < 100_000


def test_a_step_scores_each_unit_once_however_often_it_comes_back() -> None:
    canary = CanaryExperiment(DEFINITION, report_every=10**9)
    rng = random.Random(2)
    for _ in range(3):  # every unit comes back twice: only its first request is scored
        for i in range(3_000):
            scored, verdict = canary.enter(f"u{i}", canary.assign(f"u{i}"))
            assert verdict is None
            if scored:
                canary.observe(canary.assign(f"u{i}"), float(rng.random() < 0.8), canary.step)
    assert canary.state == "running" and canary.step == 0 and canary.test.n == 3_000
    restored = loads(dumps(canary))
    assert restored.enter("u7", restored.assign("u7")) == (False, None)  # its seen units are in its state
