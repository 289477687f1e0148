"""Operating characteristics of the forgetting guard, measured through ``check_forgetting`` itself.

Every run is one promotion of :func:`stream_cd.simulate.forgetting.guard_run`: a seeded history
fed to a ``ReferenceSample``, two toy models whose errors share a per-event difficulty (or a
common residual), and the shipped check. Under the null the count of holds must stay within what
chance allows at alpha (the binomial's 99.9 % upper quantile); for the stated effect (the
candidate 0.10 worse in error rate, or 10 % worse in MAE, on the 30 % of events from an old
regime) the hold rate must be the power the simulation gives, within the binomial's 0.1 % and
99.9 % quantiles. A flipped one-sided direction, a two-sample test that ignores the pairing, or
a test that holds too readily fails these.
"""

from __future__ import annotations

from scipy import stats

from stream_cd.simulate.forgetting import RegressionScenario, Scenario, exact_hold_probability, guard_run

# bench/forgetting.py, 10,000 vectorised runs: Wilcoxon at size 2,000, alpha 0.01, the stated effect
REGRESSION_POWER = 0.286


def holds(scenario: Scenario | RegressionScenario, size: int, alpha: float, runs: int, seed: int) -> int:
    return sum(guard_run(scenario, size, alpha, seed * 100_000 + r) for r in range(runs))


def within_chance(runs: int, p: float) -> tuple[int, int]:
    return int(stats.binom.ppf(0.001, runs, p)), int(stats.binom.ppf(0.999, runs, p))


def test_equally_good_classifiers_are_held_at_most_alpha_of_the_time() -> None:
    runs, alpha = 1000, 0.05
    count = holds(Scenario(worsening=0.0), 500, alpha, runs, seed=1)
    print(f"\nclassification null, size 500, alpha {alpha}: {count} holds in {runs} runs")
    assert count <= within_chance(runs, alpha)[1]


def test_a_classifier_that_forgot_an_old_regime_is_held_with_the_simulated_power() -> None:
    runs, alpha, scenario = 300, 0.01, Scenario(worsening=0.10)
    power = exact_hold_probability(scenario, 2000, alpha)
    count = holds(scenario, 2000, alpha, runs, seed=2)
    low, high = within_chance(runs, power)
    print(f"\nclassification, 0.10 worse on 30 % old events, size 2,000, alpha {alpha}: "
          f"{count} holds in {runs} runs (power {power:.3f}, chance allows {low}-{high})")
    assert low <= count <= high


def test_equally_good_regressors_are_held_at_most_alpha_of_the_time() -> None:
    runs, alpha = 500, 0.05
    count = holds(RegressionScenario(worsening=0.0), 500, alpha, runs, seed=3)
    print(f"\nregression null, size 500, alpha {alpha}: {count} holds in {runs} runs")
    assert count <= within_chance(runs, alpha)[1]


def test_a_regressor_that_forgot_an_old_regime_is_held_with_the_simulated_power() -> None:
    runs, alpha = 200, 0.01
    count = holds(RegressionScenario(worsening=0.10), 2000, alpha, runs, seed=4)
    low, high = within_chance(runs, REGRESSION_POWER)
    print(f"\nregression, MAE 10 % worse on 30 % old events, size 2,000, alpha {alpha}: "
          f"{count} holds in {runs} runs (power {REGRESSION_POWER}, chance allows {low}-{high})")
    assert low <= count <= high


def test_a_model_that_cannot_predict_an_old_event_is_the_one_that_loses_it() -> None:
    from stream_cd.evaluation.forgetting import ReferenceSample, check_forgetting

    class Model:
        def __init__(self, fails_on: set[int]) -> None:
            self.fails_on = fails_on

        def predict_one(self, x: dict) -> bool:
            if x["i"] in self.fails_on:
                raise ValueError("never saw this kind of event")
            return True

    sample = ReferenceSample(1_000, "k")
    for i in range(200):
        sample.add({"i": i}, True)
    held, evidence = check_forgetting("classification", Model(set(range(60))), Model(set()), sample)
    assert not held and (evidence["candidate_better"], evidence["candidate_worse"]) == (60, 0)
    held, evidence = check_forgetting("classification", Model(set()), Model(set(range(60))), sample)
    assert held and (evidence["candidate_better"], evidence["candidate_worse"]) == (0, 60)
    assert evidence["reference_events"] == 200
