"""Interleaving against A/B testing on a simulated population, vectorised (issue 16).

How many impressions does team-draft interleaving need to pick the better of
two rankers, and how many users does an A/B test on the same population need
to reach the same decision at the same alpha? Both run on
:class:`~stream_cd.simulate.ranking.RankingPopulation`: users with their own
click propensity, ``queries_per_user`` queries each, position-biased clicks.

* Interleaving (:func:`interleaving_run`): every impression is a team draft of
  the two rankings (:func:`~stream_cd.serving.interleave.team_draft_many`, which
  drafts as the served path does), clicks are credited to teams, and the
  preference test of :mod:`stream_cd.evaluation.interleave` runs from the first
  impression, looked at after every one (:func:`~stream_cd.evaluation.interleave.first_preference`).
* A/B (:func:`ab_run`): each user is assigned one ranker by a fair coin and
  sees its top ``k`` for all their queries; the user's total clicks are the
  outcome, and the core's anytime-valid two-sample test
  (:mod:`stream_cd.evaluation.twosample`) runs on them, looked at after every user.

The simulated rankers (:class:`Scorer`) score a candidate by what the
population's relevance is made of: ``quality_weight * quality + match_share *
match_weight * match``, plus ``noise`` times a fresh standard normal per
candidate and impression. ``match_share`` 1 knows the query-item match as the
population does; 0.5 knows half of it. Two scorers with the same settings are
equally good, with errors independent of each other (an A/A pair whose
rankings still differ).

>>> from stream_cd.simulate.ranking import PopulationParams
>>> better, worse = Scorer(1.0), Scorer(0.5)
>>> interleaving_run(PopulationParams(), worse, better, seed=1, queries_per_user=1)   # impressions
(1762, 1)
>>> ab_run(PopulationParams(), worse, better, seed=1, queries_per_user=1)   # users, one impression each
(13763, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_cd.evaluation.interleave import INTERLEAVE_A, first_preference
from stream_cd.evaluation.twosample import first_decision
from stream_cd.serving.interleave import team_draft_many
from stream_cd.simulate.ranking import Impressions, PopulationParams, RankingPopulation

__all__ = ["Scorer", "interleaving_run", "ab_run"]


@dataclass(frozen=True)
class Scorer:
    """A simulated ranker (see the module docstring)."""

    match_share: float = 1.0
    noise: float = 0.0

    def scores(self, params: PopulationParams, drawn: Impressions, rng: np.random.Generator) -> np.ndarray:
        s = params.quality_weight * drawn.quality + self.match_share * params.match_weight * drawn.match
        if self.noise:
            s = s + self.noise * rng.standard_normal(s.shape)
        return s


def _ranking(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")


def _biases(population: RankingPopulation, n: int, queries_per_user: int) -> np.ndarray:
    users = -(-n // queries_per_user)
    return np.repeat(population.user_biases(users), queries_per_user)[:n]


def interleaving_run(params: PopulationParams, champion: Scorer, challenger: Scorer, alpha: float = 0.05,
                     seed: int = 0, queries_per_user: int = 10, max_impressions: int = 200_000,
                     batch: int = 2_000, a: float = INTERLEAVE_A) -> tuple[int, int]:
    """Impressions until the preference test decides, and which way (+1 the challenger wins,
    -1 the champion); ``(max_impressions, 0)`` if it never does within them."""
    population = RankingPopulation(params, seed)
    rng = np.random.default_rng([seed, 2])
    outcomes = np.empty(0, dtype=np.int8)
    rounds = (params.k + 1) // 2
    while outcomes.size < max_impressions:
        drawn = population.impressions(_biases(population, batch, queries_per_user))
        first = _ranking(champion.scores(params, drawn, rng))
        second = _ranking(challenger.scores(params, drawn, rng))
        coins = rng.random((batch, rounds)) < 0.5
        served, teams = team_draft_many(first, second, params.k, coins)
        rows = np.arange(batch)[:, None]
        clicks = drawn.examined & drawn.relevant[rows, served]
        arm_clicks = (clicks & (teams == 1)).sum(axis=1)
        control_clicks = (clicks & (teams == 0)).sum(axis=1)
        outcomes = np.concatenate((outcomes, np.sign(arm_clicks - control_clicks).astype(np.int8)))
        index, side = first_preference(outcomes, alpha, a)
        if side:
            return index + 1, side
    return max_impressions, 0


def ab_run(params: PopulationParams, control: Scorer, arm: Scorer, alpha: float = 0.05, seed: int = 0,
           queries_per_user: int = 10, max_users: int = 200_000, batch: int = 2_000) -> tuple[int, int]:
    """Users until the A/B test on clicks per user decides, and which way (+1 the arm is better,
    -1 the control); ``(max_users, 0)`` if it never does within them."""
    population = RankingPopulation(params, seed)
    rng = np.random.default_rng([seed, 3])
    rewards, in_arm = np.empty(0), np.empty(0, dtype=bool)
    length = min(params.k, params.candidates)
    while rewards.size < max_users:
        assigned = rng.random(batch) < 0.5
        drawn = population.impressions(np.repeat(population.user_biases(batch), queries_per_user))
        scores = np.where(np.repeat(assigned, queries_per_user)[:, None], arm.scores(params, drawn, rng),
                          control.scores(params, drawn, rng))
        served = _ranking(scores)[:, :length]
        clicks = (drawn.examined & np.take_along_axis(drawn.relevant, served, axis=1)).sum(axis=1)
        rewards = np.concatenate((rewards, clicks.reshape(batch, queries_per_user).sum(axis=1).astype(float)))
        in_arm = np.concatenate((in_arm, assigned))
        index, side = first_decision(rewards, in_arm, 0.5, alpha)
        if side:
            return index + 1, side
    return max_users, 0
