"""Operating characteristics of the anytime-valid paired tests, by seeded simulation.

Every run is looked at after every pair. The classification runs go through
``crossing_table`` (the boundary of the module's own ``log_lr_better``); the
exactness tests check that it, the every-step reference ``first_crossing`` and
the per-event classes make the same decisions. Rates are printed (``pytest -s``)
and repeated in the assertion messages.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from functools import cache

import numpy as np
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from stream_cd.evaluation.sequential import (
    DiscordantPairsTest, MeanDifferenceTest, bernstein_radius, crossed, crossing_table, first_crossing,
    log_lr_better, log_lr_worse, normal_mixture_log_lr, normal_mixture_rho2,
)

RUNS = 200
Draw = Callable[[np.random.Generator, int, int, int], tuple[np.ndarray, np.ndarray]]


def independent(p_champion: float, p_challenger: float) -> Draw:
    """Each model errs independently, at a fixed rate."""
    def draw(rng: np.random.Generator, runs: int, start: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.random((runs, m)) < p_champion, rng.random((runs, m)) < p_challenger
    return draw


def classification_runs(draw: Draw, events: int, alpha: float, seed: int, runs: int = RUNS,
                        chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Events (1-based) to the first "better" and the first "worse" crossing of each run, -1 for none."""
    rng = np.random.default_rng(seed)
    table = crossing_table(alpha, max_count=events)
    first = np.full((2, runs), -1, dtype=np.int64)
    wins, losses = np.zeros((runs, 1), np.int64), np.zeros((runs, 1), np.int64)
    for start in range(0, events, chunk):
        m = min(chunk, events - start)
        champion_wrong, challenger_wrong = draw(rng, runs, start, m)
        w = np.cumsum(champion_wrong & ~challenger_wrong, axis=1) + wins
        l = np.cumsum(challenger_wrong & ~champion_wrong, axis=1) + losses
        for side, hit in enumerate((crossed(w, l, table), crossed(l, w, table))):
            new = hit.any(axis=1) & (first[side] < 0)
            first[side][new] = start + hit.argmax(axis=1)[new] + 1
        wins, losses = w[:, -1:], l[:, -1:]
    return first[0], first[1]


@cache
def aa_runs() -> tuple[np.ndarray, np.ndarray]:
    return classification_runs(independent(0.20, 0.20), 100_000, 0.01, seed=1)


def test_aa_false_promotion_under_continuous_monitoring() -> None:
    better, _ = aa_runs()
    rate = (better > 0).mean()
    print(f"\nA/A, 20 % vs 20 %, {RUNS} runs of 100,000 events, alpha 0.01: shown better in {rate:.1%} of runs")
    assert rate <= 0.02, f"false promotion in {rate:.1%} of runs"


def test_power_and_events_to_promotion_against_a_fixed_horizon_test() -> None:
    better, worse = classification_runs(independent(0.20, 0.18), 20_000, 0.01, seed=2)
    power = (better > 0).mean()
    median = np.median(np.where(better > 0, better, np.inf))
    # A fixed-horizon one-sided binomial (McNemar) test on the discordant pairs: Cohen's h of
    # their win rate against 1/2, one sample, over the expected discordant rate per event.
    win, loss = 0.20 * 0.82, 0.18 * 0.80
    h = proportion_effectsize(win / (win + loss), 0.5)
    solve = NormalIndPower().solve_power
    fixed = {p: solve(effect_size=h, alpha=0.01, power=p, ratio=0, alternative="larger") / (win + loss)
             for p in (0.80, min(power, 0.99))}
    print(f"\npower 18 % vs 20 % within 20,000 events: {power:.1%}; median events to promotion {median:,.0f};"
          f" fixed-horizon test: {fixed[0.80]:,.0f} events for 80 % power,"
          f" {fixed[min(power, 0.99)]:,.0f} for {min(power, 0.99):.1%}")
    assert power >= 0.80, f"promoted in {power:.1%} of runs"
    assert (worse > 0).mean() <= 0.01


def test_a_worse_challenger_is_dropped_and_aa_worse_side_holds_alpha() -> None:
    _, worse = classification_runs(independent(0.20, 0.25), 20_000, 0.01, seed=3)
    dropped = (worse > 0).mean()
    aa_worse = (aa_runs()[1] > 0).mean()
    print(f"\n25 % vs 20 %: shown worse within 20,000 events in {dropped:.1%} of runs;"
          f" A/A shown worse in {aa_worse:.1%}")
    assert dropped >= 0.95, f"shown worse in {dropped:.1%}"
    assert aa_worse <= 0.01, f"A/A shown worse in {aa_worse:.1%}"


def test_null_at_every_step_with_a_drifting_win_probability() -> None:
    """Both models learn: the discordant rate falls from 40 % to 20 % and the challenger's
    win probability on discordant pairs swings between 0.3 and 0.5, never above."""
    def draw(rng: np.random.Generator, runs: int, start: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(start, start + m)
        discordant = rng.random((runs, m)) < 0.2 + 0.2 * np.exp(-t / 30_000)
        win = rng.random((runs, m)) < 0.4 + 0.1 * np.cos(2 * np.pi * t / 7_000)
        return discordant & win, discordant & ~win
    better, worse = classification_runs(draw, 100_000, 0.01, seed=4)
    rate = (better > 0).mean()
    print(f"\ndrifting null (p_t in [0.3, 0.5]): shown better in {rate:.1%}, worse in {(worse > 0).mean():.1%}")
    assert rate <= 0.01, f"false promotion in {rate:.1%}"


def test_per_event_class_makes_the_decisions_of_every_step_evaluation() -> None:
    table = crossing_table(0.01, max_count=20_000)
    for seed, (p_champion, p_challenger) in enumerate([(0.20, 0.15), (0.20, 0.25), (0.20, 0.20), (0.20, 0.18),
                                                       (0.3, 0.3)]):
        rng = np.random.default_rng(100 + seed)
        champion, challenger = (rng.random(20_000) < p_champion) * 1.0, (rng.random(20_000) < p_challenger) * 1.0
        wins, losses = np.cumsum(champion > challenger), np.cumsum(champion < challenger)
        test = DiscordantPairsTest(alpha=0.01)
        decisions = np.array([test.update(c, h) for c, h in zip(champion.tolist(), challenger.tolist())])
        better, worse = first_crossing(wins, losses, 0.01), first_crossing(losses, wins, 0.01)
        assert better == (int(np.argmax(crossed(wins, losses, table))) if crossed(wins, losses, table).any() else -1)
        assert worse == (int(np.argmax(crossed(losses, wins, table))) if crossed(losses, wins, table).any() else -1)
        first = min((i for i in (better, worse) if i >= 0), default=-1)
        changed = np.flatnonzero(decisions)
        assert (changed[0] if changed.size else -1) == first, (seed, changed[:1], better, worse)
        if first >= 0:
            assert decisions[first] == (1 if first == better else -1) and (decisions[first:] == decisions[first]).all()
        # the p-values are exactly those of evaluating every step
        assert test.best_better == max(0.0, float(np.max(log_lr_better(wins, losses))))
        assert test.best_worse == max(0.0, float(np.max(log_lr_worse(wins, losses))))


def test_pickles_and_resumes() -> None:
    rng = np.random.default_rng(5)
    pairs = [(float(rng.random() < 0.2), float(rng.random() < 0.17)) for _ in range(6_000)]
    for cls in (DiscordantPairsTest, MeanDifferenceTest):
        whole, half = cls(), cls()
        for pair in pairs[:3_000]:
            whole.update(*pair), half.update(*pair)
        half = pickle.loads(pickle.dumps(half))
        assert [whole.update(*p) for p in pairs[3_000:]] == [half.update(*p) for p in pairs[3_000:]]
        assert whole.evidence() == half.evidence()


def test_evidence_and_confidence_sequence_coverage() -> None:
    test = DiscordantPairsTest()
    assert test.evidence()["p_value"] == 1.0 and test.evidence()["ci"] == [-1.0, 1.0]
    assert set(test.evidence()) >= {"test", "pairs", "discordant", "challenger_wins", "champion_wins", "p_value",
                                    "p_value_worse", "ci", "alpha", "prior"}
    assert set(MeanDifferenceTest().evidence()) >= {"test", "pairs", "mean_difference", "ci", "p_value",
                                                    "p_value_worse", "alpha"}
    # The accuracy difference is 0.02; its confidence sequence, looked at every 2,000 events, misses it in
    # at most alpha of the runs.
    rng = np.random.default_rng(6)
    champion, challenger = rng.random((RUNS, 40_000)) < 0.20, rng.random((RUNS, 40_000)) < 0.18
    wins = np.cumsum(champion & ~challenger, axis=1)[:, 1_999::2_000]
    losses = np.cumsum(challenger & ~champion, axis=1)[:, 1_999::2_000]
    n = np.arange(2_000, 40_001, 2_000)
    radius = np.vectorize(lambda v: bernstein_radius(float(v), 0.005))(wins + losses)
    missed = (np.abs((wins - losses) - 0.02 * n) >= radius).any(axis=1).mean()
    print(f"\nconfidence sequence of the accuracy difference missed it in {missed:.1%} of runs")
    assert missed <= 0.01


def regression_runs(d: np.ndarray, alpha: float, t_star: float = 10_000,
                    min_sample: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The vectorised path of MeanDifferenceTest: the side (+1 / -1, else 0) and index of each row's first crossing."""
    t = np.arange(1, d.shape[1] + 1)
    mean = np.cumsum(d, axis=1) / t
    var = np.maximum(np.cumsum(d * d, axis=1) / t - mean * mean, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        hit = (normal_mixture_log_lr(t, mean, var, normal_mixture_rho2(t_star, alpha)) > -math.log(alpha))
    hit &= (t >= min_sample) & (var > 0)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return np.where(first >= 0, np.sign(mean[np.arange(d.shape[0]), first]), 0).astype(int), first


def test_regression_aa_power_and_per_event_class() -> None:
    rng = np.random.default_rng(7)
    aa = np.concatenate([regression_runs(np.abs(rng.normal(size=(50, 20_000))) - np.abs(rng.normal(size=(50, 20_000))),
                                         0.05)[0] for _ in range(RUNS // 50)])
    better = np.concatenate([regression_runs(np.abs(rng.normal(size=(50, 20_000)))
                                             - np.abs(rng.normal(scale=0.9, size=(50, 20_000))), 0.05)[0]
                             for _ in range(RUNS // 50)])
    false_rate, power = (aa > 0).mean(), (better > 0).mean()
    print(f"\nregression, alpha 0.05, {RUNS} runs of 20,000 pairs: A/A shown better in {false_rate:.1%},"
          f" worse in {(aa < 0).mean():.1%}; |N(0, 0.9^2)| vs |N(0, 1)| errors shown better in {power:.1%}")
    assert false_rate <= 0.06, f"false promotion in {false_rate:.1%}"
    assert power >= 0.95, f"promoted in {power:.1%}"
    for seed in range(4):
        rng = np.random.default_rng(200 + seed)
        champion, challenger = np.abs(rng.normal(size=5_000)), np.abs(rng.normal(scale=1 - 0.05 * seed, size=5_000))
        test = MeanDifferenceTest(alpha=0.05)
        decisions = np.array([test.update(c, h) for c, h in zip(champion.tolist(), challenger.tolist())])
        side, first = regression_runs((champion - challenger)[None, :], 0.05)
        changed = np.flatnonzero(decisions)
        assert (changed[0] if changed.size else -1) == first[0] and decisions[-1] == side[0], seed
