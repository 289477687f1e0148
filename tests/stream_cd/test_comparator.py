"""The paired comparator: exact McNemar for classification, paired t for regression (issue 3, item 6)."""

from __future__ import annotations

import random

import pytest
from scipy import stats

from stream_cd.evaluation.paired import McNemarComparator, PairedTTestComparator, make_comparator


def bernoulli_pairs(rng: random.Random, n: int, p_champion: float, p_challenger: float) -> list[tuple[float, float]]:
    return [(float(rng.random() < p_champion), float(rng.random() < p_challenger)) for _ in range(n)]


def independent_mcnemar_p(window: list[tuple[float, float]]) -> float:
    b = sum(1 for c, h in window if c > h)  # challenger right, champion wrong
    c = sum(1 for ch, h in window if ch < h)
    if b + c == 0:
        return 1.0
    return stats.binomtest(b, b + c, 0.5).pvalue


def test_mcnemar_p_value_equals_binomtest_on_the_window_at_every_test() -> None:
    rng = random.Random(3)
    pairs = bernoulli_pairs(rng, 3000, 0.30, 0.27)
    cmp = McNemarComparator(alpha=1e-12, min_sample=100, window=400, every=50, budget=10**9)
    checked = 0
    for i, (champion, challenger) in enumerate(pairs, start=1):
        cmp.update(champion, challenger)
        if i >= 100 and (i - 100) % 50 == 0:
            window = pairs[max(0, i - 400):i]
            evidence = cmp.evaluate().evidence
            assert evidence["sample_size"] == len(window)
            assert evidence["p_value"] == pytest.approx(independent_mcnemar_p(window), rel=1e-12, abs=0)
            assert evidence["statistic"] == sum(1 for c, h in window if c > h)
            assert evidence["champion_loss"] == round(sum(c for c, _ in window) / len(window), 6)
            assert evidence["challenger_loss"] == round(sum(h for _, h in window) / len(window), 6)
            assert evidence["test"] == "mcnemar-exact" and evidence["alpha"] == 1e-12
            checked += 1
    assert checked == (3000 - 100) // 50 + 1


def test_promotion_needs_significance_not_just_a_better_mean() -> None:
    # 7 challenger wins of 7 discordant pairs: p = 2 * 0.5**7 = 0.0156 > 0.01, no promotion
    cmp = McNemarComparator(alpha=0.01, min_sample=20, window=20, every=1)
    pairs = [(1.0, 0.0)] * 7 + [(0.0, 0.0)] * 13
    verdicts = [cmp.update(*p) for p in pairs]
    last = verdicts[-1]
    assert last is not None and last.action == "keep"
    assert last.evidence["p_value"] == pytest.approx(2 * 0.5**7)
    assert last.evidence["challenger_loss"] < last.evidence["champion_loss"]
    # 10 of 10: p = 2 * 0.5**10 = 0.00195 < 0.01, promotion
    cmp = McNemarComparator(alpha=0.01, min_sample=20, window=20, every=1)
    pairs = [(1.0, 0.0)] * 10 + [(0.0, 0.0)] * 10
    last = [cmp.update(*p) for p in pairs][-1]
    assert last is not None and last.action == "promote"
    assert last.evidence["p_value"] == pytest.approx(2 * 0.5**10)
    # significant, but the challenger is the worse one: never a promotion
    cmp = McNemarComparator(alpha=0.01, min_sample=20, window=20, every=1, budget=10**6)
    last = [cmp.update(*p) for p in [(0.0, 1.0)] * 10 + [(0.0, 0.0)] * 10][-1]
    assert last is not None and last.action == "keep" and last.evidence["p_value"] < 0.01


def test_no_discordant_pairs_gives_p_one_and_no_promotion() -> None:
    cmp = McNemarComparator(alpha=0.01, min_sample=10, window=10, every=1)
    verdict = [cmp.update(1.0, 1.0) for _ in range(10)][-1]
    assert verdict is not None and verdict.action == "keep" and verdict.evidence["p_value"] == 1.0


def test_equal_models_rarely_promote_over_many_seeds() -> None:
    """Equal-quality models: the false-promotion rate stays near the one-sided level.

    Each seed runs 9 tests (min_sample 1000, every 500, 5000 pairs); a promote
    needs p < 0.01 *and* the challenger ahead, so about alpha/2 per test.
    """
    seeds = range(200)
    promoted = 0
    for seed in seeds:
        rng = random.Random(seed)
        cmp = McNemarComparator(alpha=0.01, min_sample=1000, window=5000, every=500, budget=10**9)
        for champion, challenger in bernoulli_pairs(rng, 5000, 0.2, 0.2):
            verdict = cmp.update(champion, challenger)
            if verdict is not None and verdict.action == "promote":
                assert verdict.evidence["p_value"] < 0.01
                assert verdict.evidence["challenger_loss"] < verdict.evidence["champion_loss"]
                promoted += 1
                break
    # Bonferroni bound on the expected count: 200 seeds x 9 tests x alpha/2 = 9 (measured: 6)
    assert promoted <= 9, f"{promoted} of {len(seeds)} equal-quality challengers promoted"


def test_clearly_better_challenger_is_promoted_at_the_first_test() -> None:
    rng = random.Random(1)
    cmp = McNemarComparator(alpha=0.01, min_sample=200, window=1000, every=100)
    for i, pair in enumerate(bernoulli_pairs(rng, 200, 0.30, 0.10), start=1):
        verdict = cmp.update(*pair)
        assert (verdict is None) == (i < 200)
    assert verdict is not None and verdict.action == "promote"


def test_worse_challenger_is_dropped_only_once_the_budget_is_spent() -> None:
    rng = random.Random(5)
    cmp = McNemarComparator(alpha=0.01, min_sample=100, window=500, every=100, budget=1000)
    verdicts = []
    for i, pair in enumerate(bernoulli_pairs(rng, 1500, 0.10, 0.40), start=1):
        verdict = cmp.update(*pair)
        if verdict is not None:
            verdicts.append((i, verdict.action))
    drops = [i for i, action in verdicts if action == "drop"]
    assert drops and drops[0] == 1000
    assert all(action == "keep" for i, action in verdicts if i < 1000)
    assert not any(action == "promote" for _, action in verdicts)


def test_better_challenger_is_not_dropped_after_the_budget() -> None:
    # better but not significantly: keep, not drop, even past the budget
    cmp = McNemarComparator(alpha=0.01, min_sample=10, window=30, every=1, budget=10)
    verdicts = [cmp.update(*p) for p in [(1.0, 0.0)] * 3 + [(0.0, 0.0)] * 20]
    assert all(v is None or v.action == "keep" for v in verdicts)
    assert cmp.evaluate().action == "keep"
    # once the wins slide out of the window it is no longer better: past the budget it is dropped
    verdicts = [cmp.update(0.0, 0.0) for _ in range(10)]
    assert verdicts[-1] is not None and verdicts[-1].action == "drop"
    assert all(v is None or v.action == "keep" for v in verdicts[:-1])


def test_keep_is_reported_once_per_window() -> None:
    cmp = McNemarComparator(alpha=0.01, min_sample=100, window=1000, every=100, budget=10**9)
    reported = [i for i in range(1, 3001) if cmp.update(0.0, 0.0) is not None]
    assert reported == [100, 1100, 2100]


def test_the_sliding_window_forgets_old_pairs() -> None:
    cmp = McNemarComparator(alpha=0.01, min_sample=100, window=300, every=100, budget=10**9)
    for _ in range(1000):  # challenger wins a lot, long ago
        cmp.update(1.0, 0.0)
    assert cmp.evaluate().action == "promote"
    for _ in range(300):  # then a full window where the champion wins every discordant pair
        cmp.update(0.0, 1.0)
    assert cmp.challenger_wins == 0 and cmp.champion_wins == 300
    verdict = cmp.evaluate()
    assert verdict.action == "keep"
    assert verdict.evidence["sample_size"] == 300 and verdict.evidence["pairs_seen"] == 1300
    assert verdict.evidence["champion_loss"] == 0.0 and verdict.evidence["challenger_loss"] == 1.0
    assert cmp.champion_sum == 0.0 and cmp.challenger_sum == 300.0


def test_reset_forgets_everything_but_settings() -> None:
    cmp = McNemarComparator(alpha=0.05, min_sample=5, window=10, every=2, budget=50)
    for _ in range(20):
        cmp.update(1.0, 0.0)
    cmp.reset()
    assert (cmp.seen, len(cmp.pairs), cmp.challenger_wins, cmp.champion_wins) == (0, 0, 0, 0)
    assert (cmp.alpha, cmp.min_sample, cmp.window, cmp.every, cmp.budget) == (0.05, 5, 10, 2, 50)


def test_regression_paired_t_matches_scipy_on_the_window_differences() -> None:
    rng = random.Random(11)
    pairs = [(abs(rng.gauss(1.0, 1.0)), abs(rng.gauss(0.95, 1.0))) for _ in range(2000)]
    cmp = PairedTTestComparator(alpha=1e-12, min_sample=50, window=300, every=25, budget=10**9)
    checked = 0
    for i, pair in enumerate(pairs, start=1):
        cmp.update(*pair)
        if i >= 50 and i % 25 == 0:
            window = pairs[max(0, i - 300):i]
            expected = stats.ttest_1samp([c - h for c, h in window], 0.0)
            evidence = cmp.evaluate().evidence
            assert evidence["test"] == "paired-t" and evidence["sample_size"] == len(window)
            assert evidence["p_value"] == pytest.approx(float(expected.pvalue), rel=1e-9)
            assert evidence["statistic"] == pytest.approx(float(expected.statistic), rel=1e-9)
            checked += 1
    assert checked == (2000 - 50) // 25 + 1


def test_regression_promotes_a_clearly_better_challenger_and_handles_constant_differences() -> None:
    rng = random.Random(2)
    cmp = PairedTTestComparator(alpha=0.01, min_sample=200, window=500, every=100)
    verdicts = [cmp.update(abs(rng.gauss(2.0, 0.5)), abs(rng.gauss(1.0, 0.5))) for _ in range(200)]
    assert verdicts[-1] is not None and verdicts[-1].action == "promote"
    # identical losses: no variance, p = 1, keep
    flat = PairedTTestComparator(alpha=0.01, min_sample=10, window=10, every=1)
    verdict = [flat.update(1.0, 1.0) for _ in range(10)][-1]
    assert verdict is not None and verdict.action == "keep" and verdict.evidence["p_value"] == 1.0
    # a constant improvement has no variance either: the test cannot be run, so no promotion
    const = PairedTTestComparator(alpha=0.01, min_sample=10, window=10, every=1)
    verdict = [const.update(2.0, 1.0) for _ in range(10)][-1]
    assert verdict is not None and verdict.evidence["p_value"] == 1.0


def test_make_comparator_picks_the_test_of_the_task() -> None:
    assert type(make_comparator("classification", min_sample=1, window=2)) is McNemarComparator
    regression = make_comparator("regression", alpha=0.05, min_sample=3, window=4, every=5, budget=6)
    assert type(regression) is PairedTTestComparator
    assert (regression.alpha, regression.min_sample, regression.window, regression.every, regression.budget) == (0.05, 3, 4, 5, 6)
