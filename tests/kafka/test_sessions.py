"""Cold-start session adaptation through a real broker (issue 5's acceptance)."""

from __future__ import annotations

import orjson
import pytest

from stream_cd.simulate.population import sessions_population
from tests.kafka.pipeline_helpers import finish, produce, read_topic, start_worker

pytestmark = pytest.mark.kafka

FLAGS = ("--model", "logreg", "--drift", "none", "--publish-predictions", "--worker-id", "w1", "--idle-exit", "4")


def test_a_new_sessions_predictions_adapt_and_survive_a_restart(kafka_bootstrap, topic_prefix):
    prefix = topic_prefix.rstrip(".")
    topic = f"{prefix}.events"
    warm_up = list(sessions_population(300, 30, seed=2))
    newcomer = [{**e, "session": "newcomer", "id": f"new-{i}"} for i, e in enumerate(
        e for e in sessions_population(1, 20, seed=5)
    )]
    produce(kafka_bootstrap, topic, ((b"default", orjson.dumps(e)) for e in warm_up + newcomer[:10]))
    finish(start_worker(kafka_bootstrap, prefix, *FLAGS), timeout=180)

    produce(kafka_bootstrap, topic, ((b"default", orjson.dumps(e)) for e in newcomer[10:]))
    finish(start_worker(kafka_bootstrap, prefix, *FLAGS), timeout=180)

    records = read_topic(kafka_bootstrap, f"{prefix}.predictions", expected=len(warm_up) + 20, deadline_s=60)
    served = [orjson.loads(r.value) for r in records]
    assert len(served) == len(warm_up) + 20  # every prediction once, none repeated by the restart
    mine = [s for s in served if s["session"] == "newcomer"]
    assert [s["id"] for s in mine] == [e["id"] for e in newcomer]
    # the session's own feedback accumulates, across the restart too (restored from the checkpoint)
    assert [s["session_events"] for s in mine] == list(range(20))
    assert mine[0]["p"] == mine[0]["p_global"]  # a new session gets the global prediction as is
    assert all(s["p"] != s["p_global"] for s in mine[1:])  # then its feedback changes what it is served
    assert all(s["y"] == e["y"] for s, e in zip(mine, newcomer))
