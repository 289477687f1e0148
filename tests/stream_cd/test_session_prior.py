"""The learned population prior of session adaptation (issue 18): it finds the spread sessions
depart by, stays bounded, follows a population that changes, and pickles with the store."""

from __future__ import annotations

import copy
import functools
import pickle

import numpy as np
import pytest

from stream_cd.simulate.population import sessions_population
from stream_cd.serving.session_prior import BIAS, PopulationPrior
from stream_cd.serving.sessions import LogitResidual, MeanShift, SessionStore

G = {False: 0.6, True: 0.4}


def _feed(prior: PopulationPrior, tau: dict[str, float], sessions: int, rng: np.random.Generator,
          data: tuple[float, float] = (1.0, 8.0)) -> None:
    """Sessions drawn from N(0, tau^2) per coordinate, each seen through data of precision
    uniform in ``data``, reported as the exact normal posterior under the prior's current
    spread (an EM draw)."""
    for _ in range(sessions):
        draw = []
        for name, t in tau.items():
            data_prec = rng.uniform(*data)
            estimate = rng.normal(rng.normal(0.0, t), 1.0 / np.sqrt(data_prec))  # unshrunk, noisy
            post = prior.precision(name) + data_prec
            draw.append((name, data_prec * estimate / post, post))
        prior.observe(draw)


@pytest.mark.parametrize("tau", [{BIAS: 2.5, "f": 0.2}, {BIAS: 0.3, "f": 1.5}])
def test_it_finds_the_spread_sessions_depart_by_from_a_default_far_from_it(tau) -> None:
    prior = PopulationPrior(bias_sd=1.0, weight_sd=0.6)
    _feed(prior, tau, 3000, np.random.default_rng(4), data=(20.0, 80.0))  # sessions that show a lot
    assert prior.sd(BIAS) == pytest.approx(tau[BIAS], rel=0.15)
    assert prior.sd("f") == pytest.approx(tau["f"], rel=0.15)
    assert prior.sd("never-seen") == pytest.approx(tau["f"], rel=0.15)  # the pooled estimate of features


def test_with_sessions_that_show_little_a_wide_spread_is_found_fast_a_narrow_one_slowly() -> None:
    """EM's known slowness where the data say little against the prior (Dempster, Laird and
    Rubin 1977, section 3): a narrow spread is approached from above, a step at a time."""
    prior = PopulationPrior(bias_sd=1.0, weight_sd=0.6)
    rng = np.random.default_rng(4)
    _feed(prior, {BIAS: 2.5, "f": 0.2}, 3000, rng)
    assert prior.sd(BIAS) == pytest.approx(2.5, rel=0.15)
    assert 0.2 < prior.sd("f") < 0.4  # on its way down from 0.6
    _feed(prior, {BIAS: 2.5, "f": 0.2}, 7000, rng)
    assert prior.sd("f") == pytest.approx(0.2, rel=0.3)


def test_a_few_sessions_move_the_weak_default_and_the_estimate_follows_a_changing_population() -> None:
    estimates = {}
    for memory in (500, 1e9):
        prior = PopulationPrior(bias_sd=1.5, weight_sd=0.5, memory=memory)
        rng = np.random.default_rng(5)
        _feed(prior, {BIAS: 3.0}, 20, rng)
        assert prior.sd(BIAS) > 2.0  # twenty sessions outweigh the default
        _feed(prior, {BIAS: 3.0}, 2000, rng)
        assert prior.sd(BIAS) == pytest.approx(3.0, rel=0.1)
        _feed(prior, {BIAS: 0.5}, 4000, rng)  # the population changes
        estimates[memory] = prior.sd(BIAS)
    assert estimates[500] == pytest.approx(0.5, rel=0.25)  # forgetting at 1/memory follows it ...
    assert estimates[1e9] > 1.5  # ... where a running mean of every draw would not


def test_the_spreads_and_the_number_of_names_are_bounded() -> None:
    prior = PopulationPrior(bounds=(0.1, 2.0), max_names=3)
    for _ in range(300):
        prior.observe([(BIAS, 1e6, 1.0), *((f"f{i}", 0.0, 1e9) for i in range(10))])
    assert prior.sd(BIAS) == pytest.approx(2.0) and prior.sd("f0") == pytest.approx(0.1)
    assert len(prior.spreads()) == 2 + 3  # bias, pooled, and three names of their own
    assert "f9" not in prior.spreads() and prior.sd("f9") == prior.spreads()["features"] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        PopulationPrior(bounds=(0.0, 1.0))


def test_sessions_report_at_their_fourth_event_and_every_doubling() -> None:
    prior = PopulationPrior()
    assert [n for n in range(1, 70) if prior.due(n)] == [4, 8, 16, 32, 64]
    a = LogitResidual(population=prior)
    for n in range(1, 9):
        a.learn({"f": 1.0}, True, G)
        assert prior.draws == (0 if n < 4 else 4 if n < 8 else 8)  # bias and f of both classes


def test_the_store_learns_one_prior_for_its_sessions_and_a_fixed_prior_stays_fixed() -> None:
    events = list(sessions_population(60, 10, seed=2))
    learned, fixed = SessionStore(LogitResidual), SessionStore(LogitResidual, learn_prior=False)
    for e in events:
        learned.learn(e["session"], e["x"], e["y"], G, e["ts"])
        fixed.learn(e["session"], e["x"], e["y"], G, e["ts"])
    assert fixed.prior is None and all(fixed.get(s).population is None for s in list(fixed))
    assert all(learned.get(s).population is learned.prior for s in list(learned))
    # sessions x (4th, 8th event) x classes x (bias, f0-f3 and the 1 to 4 genres seen so far)
    assert 60 * 2 * 2 * 6 <= learned.prior.draws <= 60 * 2 * 2 * 9
    assert learned.prior.spreads() != PopulationPrior(1.5, 0.5).spreads()
    assert SessionStore(MeanShift).prior is None  # a regression adapter keeps its fixed prior
    shared = PopulationPrior()
    given = SessionStore(functools.partial(LogitResidual, population=shared))
    given.learn("s", {"f": 1.0}, True, G)
    assert given.prior is None and given.get("s").population is shared


def test_other_sessions_feedback_reaches_a_session_only_through_the_prior() -> None:
    events = list(sessions_population(80, 10, seed=6))
    store = SessionStore(LogitResidual)
    for e in events[:400]:
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    before = pickle.loads(pickle.dumps(store))
    for e in events[400:]:  # other sessions' feedback
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    newcomer = events[:10]
    swapped = copy.deepcopy(before)
    swapped.prior.__dict__.update(copy.deepcopy(store.prior.__dict__))  # before, with today's prior
    served = {}
    for name, s in (("after", store), ("before", before), ("swapped", swapped)):
        for e in newcomer:
            s.learn("newcomer", e["x"], e["y"], G, e["ts"])
        served[name] = [s.predict("newcomer", e["x"], G) for e in newcomer]
    assert served["after"] != served["before"]  # the others' feedback changed what it is served ...
    assert served["after"] == served["swapped"]  # ... and the prior is all of that change


def test_the_prior_pickles_with_the_store_and_learning_goes_on_identically() -> None:
    events = list(sessions_population(40, 12, seed=7))
    store = SessionStore(LogitResidual, max_sessions=50, ttl_ms=None)
    for e in events[:240]:
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    copy_ = pickle.loads(pickle.dumps(store))
    assert copy_.prior.spreads() == store.prior.spreads() and copy_.prior is not store.prior
    assert all(copy_.get(s).population is copy_.prior for s in list(copy_))  # still one shared prior
    for e in events[240:]:
        assert copy_.predict(e["session"], e["x"], G) == store.predict(e["session"], e["x"], G)
        copy_.learn(e["session"], e["x"], e["y"], G, e["ts"])
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    assert copy_.prior.spreads() == store.prior.spreads() and copy_.prior.draws == store.prior.draws > 0


def test_a_checkpoint_from_before_the_learned_prior_restores_with_the_fixed_prior() -> None:
    store = SessionStore(LogitResidual, learn_prior=False)
    for e in sessions_population(5, 6, seed=8):
        store.learn(e["session"], e["x"], e["y"], G, e["ts"])
    del store.prior  # a SessionStore pickled before issue 18 has no prior
    restored = pickle.loads(pickle.dumps(store))
    assert restored.prior is None
    restored.learn("new", {"f0": 1.0}, True, G)
    assert restored.get("new").population is None
    # a LogitResidual pickled before issue 18: its slots without the population
    adapter = store.get(next(iter(store)))
    old = LogitResidual.__new__(LogitResidual)
    old.__setstate__((None, {k: v for k, v in adapter.__getstate__()[1].items() if k != "population"}))
    assert old.population is None and old.predict({"f0": 1.0}, G) == adapter.predict({"f0": 1.0}, G)
    old.learn({"f0": 1.0}, True, G)
    assert old.n == adapter.n + 1
