"""Team-draft interleaving and its credit (issue 16, item 2), and the preference test's bookkeeping.

The credit-assignment acceptance: impressions built by hand, with known teams and known
clicks, give exactly the wins, losses and ties they should."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from stream_cd.evaluation.definition import ExperimentDefinition
from stream_cd.evaluation.interleave import CHAMPION_WINS, InterleaveExperiment, PreferenceTest, first_preference
from stream_cd.evaluation.twosample import TwoSampleTest, first_decision
from stream_cd.serving.interleave import coin_bits, credit, preference, team_draft, team_draft_many


def experiment(**settings) -> InterleaveExperiment:
    return InterleaveExperiment(ExperimentDefinition.from_mapping(
        {"name": "il", "kind": "interleave", "arms": [{"name": "b", "spec": "logreg"}], **settings}), report_every=10**9)


# -- credit assignment, by hand --------------------------------------------------------------

# served lists with known teams (0 champion, 1 challenger) and known clicks
HAND = [
    # served items, teams, clicked items, champion clicks, challenger clicks, outcome
    ([7, 3, 9, 1], [0, 1, 1, 0], {3}, 0, 1, "win"),
    ([7, 3, 9, 1], [0, 1, 1, 0], {7, 1}, 2, 0, "loss"),
    ([7, 3, 9, 1], [0, 1, 1, 0], {7, 9}, 1, 1, "tie"),
    ([7, 3, 9, 1], [0, 1, 1, 0], set(), 0, 0, "none"),
    ([2, 5, 8, 4], [1, 0, 0, 1], {2, 4, 5}, 1, 2, "win"),
    ([2, 5, 8, 4], [1, 0, 0, 1], {5, 8, 4}, 2, 1, "loss"),
    ([2, 5, 8, 4], [1, 0, 0, 1], {2, 5, 8, 4}, 2, 2, "tie"),
    ([6, 0], [0, 1], {0}, 0, 1, "win"),
    ([6, 0], [0, 1], {6}, 1, 0, "loss"),
    ([6, 0], [0, 1], {99}, 0, 0, "none"),  # a click on nothing served credits no one
]


@pytest.mark.parametrize(("served", "teams", "clicked", "champion", "challenger", "outcome"), HAND)
def test_each_click_is_credited_to_the_team_that_placed_the_item(served, teams, clicked, champion, challenger, outcome):
    assert credit(teams, served, clicked) == (champion, challenger)
    assert preference(champion, challenger) == {"win": 1, "loss": -1, "tie": 0, "none": None}[outcome]


def test_wins_losses_ties_and_impressions_without_clicks_are_counted_exactly():
    exp = experiment()
    for served, teams, clicked, *_ in HAND * 3:
        assert exp.credit(*credit(teams, served, clicked)) is None  # 30 impressions decide nothing
    status = exp.status()
    assert (status["impressions"], status["wins"], status["losses"], status["ties"], status["no_clicks"]) == (30, 9, 9, 6, 6)
    assert status["arms"]["control"]["credited_clicks"] == 3 * 9 and status["arms"]["b"]["credited_clicks"] == 3 * 8
    assert status["win_rate"] == 0.5 and status["p_value"] == 1.0 and exp.state == "running"
    # ties and impressions without clicks do not move the test
    assert (exp.test.wins, exp.test.losses) == (9, 9)


def test_a_winner_either_way_ends_the_experiment_with_its_evidence():
    for arm_wins, action, winner in ((True, "promote", "b"), (False, "stop", "control")):
        exp = experiment()
        verdict = None
        for i in itertools.count():
            won = (i % 3 != 0) == arm_wins  # one side wins two of every three decided impressions
            verdict = exp.credit(0 if won else 1, 1 if won else 0) or (exp.credit(0, 0) if i % 5 == 0 else None)
            if verdict is not None:
                break
        assert (verdict.action, verdict.evidence["winner"]) == (action, winner)
        e = verdict.evidence
        assert e["wins"] + e["losses"] + e["ties"] + e["no_clicks"] == e["impressions"]
        assert e["p_value"] <= 0.05 and e["state"] == "done"
        assert (e.get("reason") == CHAMPION_WINS) == (winner == "control")
        assert exp.credit(1, 0) is None  # decided: nothing more is counted


def test_no_winner_within_max_sample_ends_with_no_significant_difference():
    exp = experiment(max_sample=400)
    rng = random.Random(1)
    verdicts = [exp.credit(int(rng.random() < 0.4), int(rng.random() < 0.4)) for _ in range(400)]
    assert [v.action for v in verdicts if v] == ["stop"]
    assert verdicts[-1].evidence["reason"] == "no significant difference" and verdicts[-1].evidence["impressions"] == 400


def test_interleave_definitions_are_checked():
    with pytest.raises(Exception, match="exactly one arm, not 2"):
        ExperimentDefinition.from_mapping({"name": "x", "kind": "interleave", "arms": [
            {"name": "b", "spec": "logreg"}, {"name": "c", "spec": "logreg"}]})
    with pytest.raises(Exception, match="weights are for A/B/n tests"):
        ExperimentDefinition.from_mapping({"name": "x", "kind": "interleave", "weights": [50, 50],
                                           "arms": [{"name": "b", "spec": "logreg"}]})


# -- the team draft ---------------------------------------------------------------------------

def test_team_draft_places_each_item_once_keeps_the_teams_level_and_each_rankers_best_first():
    rng = random.Random(7)
    for _ in range(500):
        m = rng.randint(1, 25)
        a, b = rng.sample(range(m), m), rng.sample(range(m), m)
        k = rng.randint(1, 30)
        served, teams = team_draft(a, b, k, rng.getrandbits(64))
        assert len(served) == min(k, m) and len(set(served)) == len(served) and set(served) <= set(range(m))
        for n in range(1, len(teams) + 1):
            assert abs(teams[:n].count(0) - teams[:n].count(1)) <= 1  # level after every pair of picks
        first_a, first_b = teams.index(0) if 0 in teams else None, teams.index(1) if 1 in teams else None
        if first_a is not None:
            assert served[first_a] == next(x for x in a if x not in served[:first_a])
        if first_b is not None:
            assert served[first_b] == next(x for x in b if x not in served[:first_b])
        if len(served) >= 2:
            assert a[0] in served[:2] and b[0] in served[:2]  # each ranker's top item is in the first two


def test_the_coins_decide_who_picks_first_in_each_round():
    a, b = [0, 1, 2, 3], [3, 2, 1, 0]
    assert team_draft(a, b, 4, 0b00) == ([0, 3, 1, 2], [0, 1, 0, 1])
    assert team_draft(a, b, 4, 0b11) == ([3, 0, 2, 1], [1, 0, 1, 0])
    assert team_draft(a, a, 4, 0b01) == ([0, 1, 2, 3], [1, 0, 0, 1])  # the same ranking twice: coins alone


def test_coins_are_fair_and_the_same_for_a_request_on_every_run():
    assert coin_bits("il", "q1", 10) == coin_bits("il", "q1", 10)
    firsts = [coin_bits("il", f"q{i}", 10) & 1 for i in range(4000)]
    assert 1900 < sum(firsts) < 2100
    long = coin_bits("il", "q1", 2000)  # more rounds than one hash holds
    assert long.bit_length() > 900 and long & ((1 << 512) - 1) == coin_bits("il", "q1", 1024)


def test_team_draft_many_drafts_exactly_as_team_draft():
    rng = np.random.default_rng(3)
    n, m, k = 400, 12, 9
    a = np.argsort(rng.random((n, m)), axis=1)
    b = np.argsort(rng.random((n, m)), axis=1)
    b[:50] = a[:50]  # some identical rankings
    coins = rng.random((n, (k + 1) // 2)) < 0.5
    served, teams = team_draft_many(a, b, k, coins)
    for i in range(n):
        bits = sum(1 << r for r, c in enumerate(coins[i]) if c)
        assert team_draft(a[i].tolist(), b[i].tolist(), k, bits) == (served[i].tolist(), teams[i].tolist())


# -- the vectorised tests of simulations match the per-event ones ------------------------------

def test_first_preference_decides_where_the_preference_test_does():
    for seed in range(60):
        rng = np.random.default_rng(seed)
        p = (0.5, 0.56, 0.65)[seed % 3]
        outcomes = np.where(rng.random(3000) < 0.4, 0, np.where(rng.random(3000) < p, 1, -1))
        if seed % 2:
            outcomes = -outcomes
        test, expected = PreferenceTest(0.05), (-1, 0)
        for i, outcome in enumerate(outcomes):
            if outcome and test.update(int(outcome)):
                expected = (i, test.decision)
                break
        assert first_preference(outcomes, 0.05) == expected


def test_first_decision_decides_where_the_two_sample_test_does():
    decided = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        in_arm = rng.random(3000) < 0.5
        rewards = rng.poisson(np.where(in_arm, 1.0 + 0.1 * (seed % 3), 1.0)).astype(float)
        test, expected = TwoSampleTest(0.05), (-1, 0)
        for i in range(rewards.size):
            if test.update(float(rewards[i]), bool(in_arm[i]), 0.5):
                expected = (i, test.decision)
                break
        assert first_decision(rewards, in_arm, 0.5, 0.05) == expected
        decided += expected[1] != 0
    assert decided > 10  # the check has paths that decide
