"""Printed decisions and --predictions lines are written when their commit lands: a commit
that fails and rolls back repeats none of them."""

from __future__ import annotations

import orjson
import pytest

from stream_cd.committed_outputs import CommittedOutputs
from stream_cd.config import PipelineConfig
from stream_cd.embedded import DirectoryStore, EmbeddedTransport
from stream_cd.errors import TransportError
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.datasets import generate
from stream_cd.state.schedule import SnapshotSchedule
from stream_cd.transport import Topics
from stream_cd.worker import run_worker

CONFIG = PipelineConfig(model="logreg", shadow="none", drift="none", version_every=7)
KEY = b"test-state-key-0123456789abcdef"


def _events() -> list[bytes]:
    """Labeled events, and every third one a request whose feedback follows two events later."""
    out: list[bytes] = []
    for i, e in enumerate(generate("agrawal", 300, seed=14)):
        if i % 3:
            out.append(orjson.dumps(e))
        else:
            out.append(orjson.dumps({"id": f"r{i}", "x": e["x"]}))
            out.append(orjson.dumps({"id": f"r{i}", "y": e["y"]}))
    return out


class _Failing(EmbeddedTransport):
    """Fails ``failures`` times, as a broker going away: a send (``where="send"``) or a commit
    that lands only at the next poll or commit, as on Kafka (``where="landing"``)."""

    def __init__(self, source, failures: int, where: str, store: DirectoryStore) -> None:
        super().__init__(source, store=store)
        self.failures, self.where, self.resets = failures, where, 0
        self._flying: tuple[list, int] | None = None
        self._sends = 0

    def _fail(self, where: str) -> None:
        if self.failures and where == self.where:
            self.failures -= 1
            raise TransportError(f"the broker went away ({where})")

    def send(self, topic, key, value, headers=None) -> None:
        self._sends += 1
        if self._sends % 5 == 0:  # in the middle of a batch, after some of its outputs
            self._fail("send")
        super().send(topic, key, value, headers)

    def commit(self, checkpoints=(), *, wait=True) -> None:
        if self.where != "landing":
            return super().commit(checkpoints, wait=wait)
        self._land()
        self._flying = (list(checkpoints), self.position)
        if wait:
            self._land()

    def _land(self) -> None:
        if self._flying is None:
            return
        (checkpoints, position), self._flying = self._flying, None
        self._fail("landing")
        if checkpoints:
            self.store.save(checkpoints)  # type: ignore[union-attr]
        del self._read[: position - self.committed]
        self.committed = position
        self._landed += 1

    def poll(self, max_records, timeout_s):
        self._land()
        return super().poll(max_records, timeout_s)

    def reset(self) -> None:
        """Like a rejoin: the uncommitted messages come again, and the partition is assigned anew."""
        self._flying = None
        self.resets += 1
        self.seek(0, self.committed)
        self._events.append(("assigned", [0]))


def _run(transport: EmbeddedTransport, buffered: bool = True) -> tuple[list[str], list[bytes], Pipeline]:
    """The decisions printed and the predictions lines written by a worker over ``transport``."""
    printed: list[str] = []
    lines: list[bytes] = []
    outputs = CommittedOutputs() if buffered else None
    hold = outputs.wrap if outputs is not None else (lambda write: write)
    # a snapshot at every commit: the embedded input cannot be read again from before its last commit
    pipeline = Pipeline(CONFIG, record_predictions=True, snapshots=SnapshotSchedule(every_events=1, every_s=0))
    run_worker(transport, pipeline, Topics(), state_key=KEY, batch_size=20, commit_every_events=40,
               on_decision=hold(lambda d: printed.append(d.decision_id)),
               on_prediction=hold(lambda record: lines.append(orjson.dumps(record))), outputs=outputs)
    return printed, lines, pipeline


@pytest.mark.parametrize("where", ["send", "landing"])
def test_a_rollback_repeats_no_printed_decision_and_no_predictions_line(tmp_path, where) -> None:
    events = _events()
    reference_printed, reference_lines, reference = _run(EmbeddedTransport(events, store=DirectoryStore(tmp_path / "ref")))
    assert len(reference_printed) > 20 and len(reference_lines) == len(events) - 100  # all but the feedback

    transport = _Failing(events, failures=3, where=where, store=DirectoryStore(tmp_path / "failing"))
    printed, lines, pipeline = _run(transport)
    assert transport.resets == 3
    assert printed == reference_printed and lines == reference_lines
    assert pipeline.summary() == reference.summary()


def test_written_as_processed_they_would_repeat(tmp_path) -> None:
    """What the buffer is for: without it, the same failures repeat outputs."""
    events = _events()
    transport = _Failing(events, failures=3, where="send", store=DirectoryStore(tmp_path))
    printed, lines, _ = _run(transport, buffered=False)
    assert len(printed) > len(set(printed)) or len(lines) > len(set(lines))


def test_a_held_output_waits_for_its_commit_to_land(tmp_path) -> None:
    transport = _Failing(_events()[:50], failures=0, where="landing", store=DirectoryStore(tmp_path))
    outputs = CommittedOutputs()
    seen: list[int] = []
    from stream_cd.worker import Worker

    worker = Worker(transport, Pipeline(CONFIG), Topics(), state_key=KEY, batch_size=10, commit_every_events=20,
                    on_decision=outputs.wrap(lambda d: seen.append(d.events_seen)), outputs=outputs)
    for _ in range(3):  # the assignment, then 20 events: their commit is handed over, not landed yet
        worker._step(10, end_of_input_exits=True)
    held = outputs.pending()
    assert worker.stats.commits == 1 and transport.landed() == 0 and held > 0 and seen == []
    worker._step(10, end_of_input_exits=True)  # its poll lands the commit: they are written
    assert transport.landed() == 1 and len(seen) == held  # (the next 10 events' are held for the next)
    assert seen == sorted(seen) and max(seen) <= 20
