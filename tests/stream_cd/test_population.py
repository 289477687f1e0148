"""The simulated population of issue 5: deterministic, interleaved, users genuinely differ."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from stream_cd.errors import ConfigError
from stream_cd.events import decode_event
from stream_cd.simulate.population import sessions_population, simulate_population

import orjson


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    a = list(sessions_population(60, 8, seed=1))
    assert a == list(sessions_population(60, 8, seed=1))
    b = list(sessions_population(60, 8, seed=2))
    assert [e["y"] for e in a] != [e["y"] for e in b]


def test_events_are_valid_and_every_session_has_its_k_events() -> None:
    events = list(sessions_population(50, 7, seed=3, key="shop"))
    assert len(events) == 350 and len({e["id"] for e in events}) == 350
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    counts = collections.Counter(e["session"] for e in events)
    assert len(counts) == 50 and set(counts.values()) == {7}
    ev = decode_event(orjson.dumps(events[0]))
    assert ev.key == "shop" and ev.session == events[0]["session"] and type(ev.y) is bool


def test_sessions_interleave_and_users_arrive_over_time() -> None:
    events = list(sessions_population(400, 10, seed=4, concurrency=50))
    first = {}
    last = {}
    for i, e in enumerate(events):
        first.setdefault(e["session"], i)
        last[e["session"]] = i
    spans = sorted(first.values())
    assert spans[0] == 0 and spans[-1] > len(events) // 2  # late users arrive late
    open_at_middle = sum(first[s] <= 2000 <= last[s] for s in first)
    assert 30 <= open_at_middle <= 50  # many sessions open at once, never more than the concurrency


def _user_rates(n_users: int, **options) -> np.ndarray:
    rates = collections.defaultdict(list)
    for _, truth in simulate_population(n_users, 20, seed=7, **options):
        rates[truth.user].append(truth.p)
    return np.array([np.mean(v) for v in rates.values()])


def test_users_genuinely_differ_from_the_global_pattern_and_from_each_other() -> None:
    spread = _user_rates(300).std()
    same = _user_rates(300, user_bias=0.0, user_weight=0.0, user_taste=0.0).std()
    assert spread > 0.2 and same < 0.08 and spread > 3 * same
    # with no user effects, everybody follows the same global pattern: a like is predictable from x alone
    xs, ps = [], []
    for e, t in simulate_population(50, 20, seed=8, user_bias=0.0, user_weight=0.0, user_taste=0.0):
        xs.append(e["x"]["f0"])
        ps.append(t.p)
    assert np.corrcoef(xs, ps)[0, 1] > 0.4  # the global pattern is there to learn


@pytest.mark.parametrize("kwargs", [{"n_users": -1}, {"events_per_session": 0}, {"n_features": 0},
                                    {"concurrency": 0}])
def test_bad_options_are_config_errors(kwargs) -> None:
    args = {"n_users": 2, "events_per_session": 2, "seed": 1, **kwargs}
    with pytest.raises(ConfigError):
        list(sessions_population(**args))


def _offsets_and_slopes(**options) -> tuple[np.ndarray, np.ndarray]:
    """Per user: the mean true logit (the base rate) and the slope of the logit on f0."""
    by_user = collections.defaultdict(list)
    for e, t in simulate_population(300, 40, seed=11, **options):
        by_user[t.user].append((e["x"]["f0"], np.log(t.p / (1 - t.p))))
    offsets, slopes = [], []
    for rows in by_user.values():
        f0, z = np.array(rows).T
        offsets.append(z.mean())
        slopes.append(np.polyfit(f0, z, 1)[0])
    return np.array(offsets), np.array(slopes)


def test_departure_bias_moves_base_rates_only_and_weights_move_the_weights_by_the_scale() -> None:
    offsets, slopes = _offsets_and_slopes(departure="bias", departure_scale=1.2)
    assert offsets.std() > 1.8  # users' base rates spread by about 2 logits ...
    assert slopes.std() < 0.3 and abs(slopes.mean() - 1.2) < 0.15  # ... their f0 weight varies only by chance
    offsets, slopes = _offsets_and_slopes(departure="weights", departure_scale=1.6)
    assert slopes.std() == pytest.approx(1.6 * 1.2, rel=0.2)  # f0's weight departs by 1.6 x its global 1.2
    both, _ = _offsets_and_slopes(departure="both", departure_scale=1.6)
    assert both.std() > 2 * offsets.std() > 0


def test_a_departure_of_scale_zero_is_everybody_following_the_global_pattern() -> None:
    rates = _user_rates(200, departure="both", departure_scale=0.0)
    assert rates.std() < 0.08


@pytest.mark.parametrize("kwargs", [{"departure": "taste"}, {"departure": "both", "departure_scale": -1.0}])
def test_bad_departures_are_config_errors(kwargs) -> None:
    with pytest.raises(ConfigError, match="departure"):
        list(sessions_population(2, 2, seed=1, **kwargs))


def test_generate_sessions_takes_the_departure_flags(tmp_path, capsys) -> None:
    from stream_cd.cli import main

    out = tmp_path / "s.jsonl"
    argv = ["generate", "sessions", "--n-users", "20", "--events-per-session", "5", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--departure", "weights", "--departure-scale", "1.6"]) == 0
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert events == list(sessions_population(20, 5, seed=3, departure="weights", departure_scale=1.6))
    assert main([*argv, "--departure-scale", "0.5"]) == 0  # scale alone: both
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == list(
        sessions_population(20, 5, seed=3, departure="both", departure_scale=0.5))
    assert main(argv) == 0  # neither: the issue-5 mix, as before
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == list(sessions_population(20, 5, seed=3))
    with pytest.raises(SystemExit):
        main([*argv, "--departure", "taste"])
