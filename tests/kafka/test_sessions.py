"""Cold-start session adaptation through a real broker (issue 5's acceptance)."""

from __future__ import annotations

import orjson
import pytest

from stream_cd.config import PipelineConfig
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.population import sessions_population
from tests.kafka.pipeline_helpers import finish, produce, read_topic, start_worker

pytestmark = pytest.mark.kafka

FLAGS = ("--model", "logreg", "--drift", "none", "--publish-predictions", "--worker-id", "w1", "--idle-exit", "4")


def _uninterrupted(events: list[dict]) -> dict[str, list[float]]:
    """What one in-process pipeline that never restarts serves each session (the ``p`` served)."""
    pipeline = Pipeline(PipelineConfig(model="logreg", drift="none"), record_predictions=True)
    served: dict[str, list[float]] = {}
    for i, e in enumerate(events):
        record = pipeline.process(orjson.dumps(e), ts=e["ts"], offset=i).served
        served.setdefault(record["session"], []).append(record["p"])
    return served


def test_a_new_sessions_predictions_adapt_and_survive_a_restart(kafka_bootstrap, topic_prefix):
    prefix = topic_prefix.rstrip(".")
    topic = f"{prefix}.events"
    warm_up = list(sessions_population(300, 30, seed=2))
    newcomer = [{**e, "session": "newcomer", "id": f"new-{i}"} for i, e in enumerate(
        e for e in sessions_population(1, 20, seed=5)
    )]
    latecomer = [{**e, "session": "latecomer", "id": f"late-{i}", "ts": e["ts"] + 10**7} for i, e in enumerate(
        sessions_population(1, 10, seed=6)
    )]  # all its events after the restart: it starts from the learned prior the checkpoint restored
    produce(kafka_bootstrap, topic, ((b"default", orjson.dumps(e)) for e in warm_up + newcomer[:10]))
    finish(start_worker(kafka_bootstrap, prefix, *FLAGS), timeout=180)

    produce(kafka_bootstrap, topic, ((b"default", orjson.dumps(e)) for e in newcomer[10:] + latecomer))
    finish(start_worker(kafka_bootstrap, prefix, *FLAGS), timeout=180)

    expected = len(warm_up) + 20 + 10
    records = read_topic(kafka_bootstrap, f"{prefix}.predictions", expected=expected, deadline_s=60)
    served = [orjson.loads(r.value) for r in records]
    assert len(served) == expected  # every prediction once, none repeated by the restart
    mine = [s for s in served if s["session"] == "newcomer"]
    assert [s["id"] for s in mine] == [e["id"] for e in newcomer]
    # the session's own feedback accumulates, across the restart too (restored from the checkpoint)
    assert [s["session_events"] for s in mine] == list(range(20))
    assert mine[0]["p"] == mine[0]["p_global"]  # a new session gets the global prediction as is
    assert all(s["p"] != s["p_global"] for s in mine[1:])  # then its feedback changes what it is served
    assert all(s["y"] == e["y"] for s, e in zip(mine, newcomer))
    # sessions and the learned prior survive the restart exactly: served as if it never happened
    reference = _uninterrupted(warm_up + newcomer + latecomer)
    assert [s["p"] for s in mine] == reference["newcomer"]
    assert [s["p"] for s in served if s["session"] == "latecomer"] == reference["latecomer"]
