"""The shadow experiment: the anytime-valid paired test of a challenger, from its birth.

The test's operating characteristics (A/A false promotions, power) are measured in
tests/stream_cd/evaluation/test_sequential.py; here, what the experiment makes of it."""

from __future__ import annotations

import random

import pytest

from stream_cd.evaluation.paired import ShadowExperiment
from stream_cd.evaluation.sequential import DiscordantPairsTest, MeanDifferenceTest


def pairs(n: int, champion_error: float, challenger_error: float, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        yield float(rng.random() < champion_error), float(rng.random() < challenger_error)


def first_verdict(exp: ShadowExperiment, stream) -> tuple[int, str] | None:
    for i, (c, s) in enumerate(stream, 1):
        verdict = exp.update(c, s)
        if verdict is not None and verdict.action != "keep":
            return i, verdict.action
    return None


def test_a_clearly_better_challenger_is_promoted_once_min_sample_is_in() -> None:
    early = first_verdict(ShadowExperiment("classification", min_sample=1), pairs(5000, 0.30, 0.10, 1))
    assert early is not None and early[1] == "promote" and early[0] < 1000
    # the same stream, but the test may decide only from 1,000 pairs on: it promotes at exactly 1,000
    late = first_verdict(ShadowExperiment("classification", min_sample=1000), pairs(5000, 0.30, 0.10, 1))
    assert late == (1000, "promote")


def test_a_clearly_worse_challenger_is_dropped_as_worse() -> None:
    exp = ShadowExperiment("classification", min_sample=100)
    got = first_verdict(exp, pairs(20_000, 0.10, 0.30, 2))
    assert got is not None and got[1] == "drop" and got[0] < 2000
    evidence = exp.evidence("worse")
    assert evidence["p_value_worse"] < 0.01 <= evidence["p_value"] and evidence["reason"] == "worse"


def test_an_equal_challenger_is_dropped_at_the_budget_and_never_promoted() -> None:
    exp = ShadowExperiment("classification", min_sample=100, budget=3000, report_every=1000)
    seen = []
    for i, (c, s) in enumerate(pairs(4000, 0.2, 0.2, 3), 1):
        verdict = exp.update(c, s)
        if verdict is not None:
            seen.append((i, verdict.action, verdict.evidence.get("reason")))
            if verdict.action == "drop":
                break
    assert seen == [(1000, "keep", None), (2000, "keep", None), (3000, "drop", "budget")]


def test_no_budget_means_no_futility_drop() -> None:
    exp = ShadowExperiment("classification", min_sample=100, budget=None, report_every=10_000)
    verdicts = [(exp.pairs, v.action) for c, s in pairs(30_000, 0.2, 0.2, 4) if (v := exp.update(c, s)) is not None]
    assert verdicts == [(10_000, "keep"), (20_000, "keep"), (30_000, "keep")]


def test_a_crossing_stands_even_if_later_pairs_would_undo_it() -> None:
    # better at first, then equal: a sequential test that has rejected stays rejected
    exp = ShadowExperiment("classification", min_sample=3000)
    stream = list(pairs(800, 0.4, 0.05, 5)) + list(pairs(5000, 0.2, 0.2, 6))
    assert first_verdict(exp, stream) == (3000, "promote")


def test_evidence_carries_the_always_valid_p_value_the_bounds_and_the_sample() -> None:
    exp = ShadowExperiment("classification", min_sample=500)
    for c, s in pairs(500, 0.3, 0.1, 7):
        verdict = exp.update(c, s)
    assert verdict is not None and verdict.action == "promote"
    e = verdict.evidence
    assert e["pairs"] == 500 and e["min_sample"] == 500 and e["budget"] == 50_000
    lo, hi = e["ci"]
    assert 0 < lo < hi and e["p_value"] < 0.01 and e["test"] == DiscordantPairsTest().evidence()["test"]
    assert e["challenger_wins"] > e["champion_wins"]


@pytest.mark.parametrize("shift, action", [(0.5, "promote"), (-0.5, "drop")])
def test_regression_uses_the_confidence_sequence_on_loss_differences(shift: float, action: str) -> None:
    rng = random.Random(8)
    exp = ShadowExperiment("regression", alpha=0.05, min_sample=200)
    assert isinstance(exp.test, MeanDifferenceTest)
    got = first_verdict(exp, ((abs(rng.gauss(0, 1)) + max(shift, 0), abs(rng.gauss(0, 1)) + max(-shift, 0))
                              for _ in range(20_000)))
    assert got is not None and got[1] == action
    lo, hi = exp.evidence()["ci"]
    assert (lo > 0) if action == "promote" else (hi < 0)
