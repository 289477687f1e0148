"""Session adaptation inside a model key's slot: it adapts what is served, and touches
neither the global champion nor other sessions."""

from __future__ import annotations

from stream_cd.config import PipelineConfig
from stream_cd.simulate.population import sessions_population
from stream_cd.model_key import ModelKey

EVENTS = list(sessions_population(200, 30, seed=8))
PROBE = [e["x"] for e in sessions_population(20, 5, seed=9)]


def _run(adaptation: bool) -> ModelKey:
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none", session_adaptation=adaptation))
    for e in EVENTS:
        slot.learn(e["x"], e["y"], e["ts"], session=e["session"])
    return slot


def test_adaptation_never_changes_the_global_champion() -> None:
    on, off = _run(True), _run(False)
    assert [on.champion.model.predict_proba_one(x) for x in PROBE] == [off.champion.model.predict_proba_one(x) for x in PROBE]
    assert on.sessions is not None and len(on.sessions) == 200 and off.sessions is None


def test_adaptation_improves_what_sessions_are_served() -> None:
    on, off = _run(True), _run(False)
    assert on.metric.get() > off.metric.get() + 0.05


def test_one_sessions_feedback_leaves_other_sessions_predictions_untouched() -> None:
    slot = _run(True)
    a = EVENTS[-1]["session"]
    b = next(e["session"] for e in reversed(EVENTS) if e["session"] != a)
    before = [slot.predict(x, session=b) for x in PROBE]
    before_p = [slot.probe(x, session=b).adapted[0] for x in PROBE]
    adapter_a = slot.sessions.get(a)
    for x in PROBE:  # more feedback for a, given straight to its adapter (the champion stays as it is)
        adapter_a.learn(x, True, slot.champion.model.predict_proba_one(x))
    assert [slot.predict(x, session=b) for x in PROBE] == before
    assert [slot.probe(x, session=b).adapted[0] for x in PROBE] == before_p
    assert [slot.probe(x, session=a).adapted[0] for x in PROBE] != before_p


def test_an_unknown_session_is_served_the_champions_prediction() -> None:
    slot = _run(True)
    for x in PROBE:
        served = slot.predict(x, session="never-seen")
        global_proba = slot.champion.model.predict_proba_one(x)
        assert served == max(global_proba, key=global_proba.__getitem__)
        assert slot.probe(x, session="never-seen").adapted[1] == 0
    assert "never-seen" not in slot.sessions
