"""Team-draft interleaving: one list drafted from two rankings, each click credited to a team.

Radlinski, Kurup and Joachims (2008), "How does clickthrough data reflect
retrieval quality?", CIKM: like captains picking teams, the two rankers take
turns placing their best item not yet placed; who picks first in each round of
two is a fair coin. The served list of length k is the sequence of picks, and
each placed item carries the team that placed it (:func:`team_draft`). Each click
is credited to the team of the clicked item (:func:`credit`); an impression
whose clicks credit one team more is a win for it, equal credit is a tie, and an
impression without clicks says nothing (:func:`preference`). Because both rankers
are shown to the same user in the same list, the user's own propensity to click
(the main noise of an A/B test, where each user sees one ranker) cancels, and
the coin makes positions fair: under the null of equally good rankers each side
is as likely to win an impression.

The coins of a request are the bits of a BLAKE2b hash of the experiment's name
and the request's id (:func:`coin_bits`), so the same request is drafted the
same way on every worker, after a rebalance and on replay.

>>> champion = [0, 1, 2, 3, 4]      # candidate indexes, best first
>>> challenger = [2, 0, 4, 1, 3]
>>> team_draft(champion, challenger, k=4, coins=0b10)  # round 1: champion first; round 2: challenger first
([0, 2, 4, 1], [0, 1, 1, 0])
>>> credit([0, 1, 1, 0], [0, 2, 4, 1], clicked={4, 1})
(1, 1)
>>> preference(1, 1), preference(0, 2), preference(0, 0)
(0, 1, None)

:func:`team_draft_many` drafts many impressions at once with numpy, exactly as
:func:`team_draft` drafts each (a test checks it); simulations use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from stream_cd.learning.arms import Arm
from stream_cd.serving.router import Router

__all__ = ["coin_bits", "team_draft", "credit", "preference", "team_draft_many", "TeamDraftRouter", "CHAMPION_TEAM",
           "CHALLENGER_TEAM"]

CHAMPION_TEAM, CHALLENGER_TEAM = 0, 1


def coin_bits(salt: str, ident: str, k: int) -> int:
    """The coins of one request, as the bits of an int (bit r: who picks first in round r).

    >>> coin_bits("il-1", "q7", 10) == coin_bits("il-1", "q7", 10) != coin_bits("il-2", "q7", 10)
    True
    """
    rounds = (k + 1) // 2
    size = min(64, max(8, (rounds + 7) // 8))
    bits = int.from_bytes(hashlib.blake2b(f"{salt}\x00{ident}".encode(), digest_size=size).digest(), "big")
    block = 1
    while size * 8 * block < rounds:  # more than 512 rounds: hash on with a counter
        more = hashlib.blake2b(f"{salt}\x00{ident}\x00{block}".encode(), digest_size=64).digest()
        bits |= int.from_bytes(more, "big") << (size * 8 * block)
        block += 1
    return bits


def team_draft(a: Sequence[int], b: Sequence[int], k: int, coins: int) -> tuple[list[int], list[int]]:
    """The interleaved list of rankings ``a`` (team 0) and ``b`` (team 1), at most ``k`` long,
    and the team that placed each item.

    While the teams have placed as many items, the next coin (bit 0 of ``coins`` first; 0:
    team 0 picks) decides who picks; otherwise the team with fewer picks does. A team picks
    its highest-ranked item not yet placed; a team whose ranking is used up lets the other
    pick.
    """
    served: list[int] = []
    teams: list[int] = []
    placed: set[int] = set()
    ia = ib = na = nb = 0
    la, lb = len(a), len(b)
    while len(served) < k:
        while ia < la and a[ia] in placed:
            ia += 1
        while ib < lb and b[ib] in placed:
            ib += 1
        if ia == la and ib == lb:
            break
        if na == nb:
            first_b = coins & 1
            coins >>= 1
        else:
            first_b = nb < na
        if (first_b and ib < lb) or ia == la:
            item, team = b[ib], CHALLENGER_TEAM
            nb += 1
        else:
            item, team = a[ia], CHAMPION_TEAM
            na += 1
        served.append(item)
        teams.append(team)
        placed.add(item)
    return served, teams


def credit(teams: Sequence[int], served: Sequence[int], clicked: set[int] | frozenset[int]) -> tuple[int, int]:
    """Clicks credited to team 0 and to team 1."""
    counts = [0, 0]
    for team, item in zip(teams, served):
        if item in clicked:
            counts[team] += 1
    return counts[0], counts[1]


def preference(champion_clicks: int, challenger_clicks: int) -> int | None:
    """+1 a win of the challenger, -1 of the champion, 0 a tie, None an impression without clicks."""
    if champion_clicks == challenger_clicks:
        return None if champion_clicks == 0 else 0
    return 1 if challenger_clicks > champion_clicks else -1


def team_draft_many(a: np.ndarray, b: np.ndarray, k: int, coins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`team_draft` of many impressions at once.

    ``a``, ``b``: (n, m) rankings, each row a permutation of the m candidates; ``coins``:
    (n, rounds) booleans, column r the coin of round r (True: team 1 picks first). Returns
    (n, min(k, m)) served candidates and their teams. With full permutations the teams
    are level before every even pick, so pick 2r follows coin r and pick 2r + 1 goes to
    the other team.
    """
    n, m = a.shape
    length = min(k, m)
    placed = np.zeros((n, m), dtype=bool)
    served = np.empty((n, length), dtype=np.int64)
    teams = np.empty((n, length), dtype=np.int8)
    rows = np.arange(n)
    for step in range(length):
        coin = coins[:, step // 2]
        team_b = coin if step % 2 == 0 else ~coin
        order = np.where(team_b[:, None], b, a)
        first = np.argmin(placed[rows[:, None], order], axis=1)  # the first of the team's ranking not placed
        item = order[rows, first]
        placed[rows, item] = True
        served[:, step] = item
        teams[:, step] = team_b
    return served, teams


class TeamDraftRouter(Router):
    """Interleave: every arm ranks every request, and the served list is drafted from
    the champion's ranking and one challenger's (:func:`team_draft`)."""

    name = "interleave"

    def serving(self, champion: Arm, others: Sequence[Arm], unit: str | None = None) -> Arm:
        return champion  # the list is the champion's page; the challenger places half of it

    def scoring(self, champion: Arm, others: Sequence[Arm]) -> tuple[Arm, ...]:
        return (champion, *others)

    @staticmethod
    def merge(champion: Sequence[int], challenger: Sequence[int], k: int, salt: str, ident: str) -> tuple[list[int], list[int]]:
        return team_draft(champion, challenger, k, coin_bits(salt, ident, k))
