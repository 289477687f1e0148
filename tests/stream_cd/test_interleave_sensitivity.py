"""Interleaving's sensitivity and its error rate on the simulated population (issue 16, acceptance).

* A better ranker against a worse one: interleaving picks the better one; the impressions it
  needs (median of 50 runs) beside the users an A/B test on the same population needs to reach
  the same decision at the same alpha (its own anytime-valid two-sample test on clicks per user),
  and the ratio, which must be at least 5. Each user asks one query, so users and impressions
  are the same thing and the ratio reads the same either way (with more queries per user the A/B
  test needs fewer users but more impressions, and the ratio grows: bench/interleave.py).
* Two equally good rankers (same settings, independent errors): at alpha 0.05, a false winner in
  at most 6 % of 200 runs of 10,000 impressions each (about four times what the better ranker
  needs; Ville's inequality bounds it at 5 % for ever).

Both look after every impression (or user) from the first one. The runs are vectorised
(:mod:`stream_cd.simulate.interleaving`) and spread over two processes.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ProcessPoolExecutor

import pytest

from stream_cd.simulate.interleaving import Scorer, ab_run, interleaving_run
from stream_cd.simulate.ranking import PopulationParams

PARAMS = PopulationParams()
WORSE, BETTER = Scorer(match_share=0.5), Scorer(match_share=1.0)
EQUAL = Scorer(match_share=0.75, noise=0.5)
ALPHA = 0.05


def _interleaved(seed: int) -> tuple[int, int]:
    return interleaving_run(PARAMS, WORSE, BETTER, ALPHA, seed, queries_per_user=1)


def _ab(seed: int) -> tuple[int, int]:
    return ab_run(PARAMS, WORSE, BETTER, ALPHA, seed, queries_per_user=1, batch=10_000)


def _aa(seed: int) -> tuple[int, int]:
    return interleaving_run(PARAMS, EQUAL, EQUAL, ALPHA, 1000 + seed, queries_per_user=1, max_impressions=10_000,
                            batch=5_000)


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(max_workers=2) as executor:
        yield executor


def test_interleaving_picks_the_better_ranker_with_at_least_5x_fewer_impressions_than_an_ab_test(pool) -> None:
    interleaved = list(pool.map(_interleaved, range(50), chunksize=5))
    ab = list(pool.map(_ab, range(50), chunksize=5))
    assert [side for _, side in interleaved] == [1] * 50  # every run picks the better ranker
    assert [side for _, side in ab] == [1] * 50  # and so does every A/B test: the same decision
    impressions = statistics.median(n for n, _ in interleaved)
    users = statistics.median(n for n, _ in ab)
    ratio = users / impressions
    print(f"\nbetter vs worse ranker, alpha {ALPHA}, median of 50 runs: interleaving {impressions:,.0f} impressions; "
          f"A/B test {users:,.0f} users (one impression each); ratio {ratio:.1f}x")
    assert ratio >= 5


def test_two_equally_good_rankers_give_a_false_winner_in_at_most_6_percent_of_200_runs(pool) -> None:
    runs = list(pool.map(_aa, range(200), chunksize=10))
    false = sum(side != 0 for _, side in runs)
    print(f"\nA/A, alpha {ALPHA}: a winner in {false} of 200 runs of 10,000 impressions ({false / 200:.1%})")
    assert false <= 12
    assert all(n == 10_000 for n, side in runs if side == 0)  # the others ran their whole 10,000
