"""Helpers for the pipeline tests on a real broker: run the CLI, produce, read topics."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[2]
TEST_STATE_KEY = "test-state-key-0123456789abcdef"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_cd.cli", *args]


class _Drained:
    """One output pipe of a worker, read to its end by a thread as the worker writes: a worker
    that prints much (decisions with their evidence, log lines) never blocks on a full pipe
    while a test waits for it to commit."""

    def __init__(self, pipe) -> None:
        self._pipe = pipe
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for chunk in iter(lambda: self._pipe.read1(1 << 16), b""):
            self._chunks.append(chunk)

    def read(self) -> bytes:
        """What the worker wrote so far (all of it once it has exited and been waited for)."""
        return b"".join(self._chunks)

    def finish(self, timeout: float = 30.0) -> bytes:
        self._thread.join(timeout)
        return self.read()

    def close(self) -> None:
        self._pipe.close()


class WorkerProcess(subprocess.Popen):
    """A worker subprocess whose stdout and stderr are drained as it runs (see :class:`_Drained`)."""

    def __init__(self, args: list[str], **kwargs) -> None:
        super().__init__(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
        self.stdout = _Drained(self.stdout)  # type: ignore[assignment]
        self.stderr = _Drained(self.stderr)  # type: ignore[assignment]

    def communicate(self, input=None, timeout=None):  # noqa: A002 - Popen's own signature
        self.wait(timeout)
        return self.stdout.finish(), self.stderr.finish()  # type: ignore[union-attr]


STARTED: list[subprocess.Popen] = []
# What a worker logs of its group life: what a failed assertion about several workers needs.
_STORY = ("rebalance", "restored", "behind", "stalled", "stopping anyway", "new consumer", "failed", "rolling back",
          "giving up", "replacing")


def worker_story(*workers: WorkerProcess) -> str:
    """The rebalances, restores, stalls and failures each of ``workers`` logged so far (the
    last 40 of each), for the message of an assertion about what they did together."""
    return "\n".join(f"-- worker pid {worker.pid} (exit {worker.returncode}):\n"
                     + story_of(worker.stderr.read().decode(errors="replace"))  # type: ignore[union-attr]
                     for worker in workers)


def story_of(log: str, last: int = 40) -> str:
    """The last ``last`` lines of a worker's log that tell of its group life and failures."""
    return "\n".join([line[:300] for line in log.splitlines() if any(word in line for word in _STORY)][-last:])


def kill_leftovers() -> None:
    """Kill the workers a failed test left running."""
    while STARTED:
        worker = STARTED.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)


def start_worker(bootstrap: str, prefix: str, *flags: str) -> subprocess.Popen:
    """A ``stream-cd worker --json`` subprocess on the topics of ``prefix``."""
    worker = WorkerProcess(
        cli("worker", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--json", *flags),
        cwd=REPO,
        env={"STREAM_CD_STATE_KEY": TEST_STATE_KEY, **os.environ, "PYTHONUNBUFFERED": "1"},
    )
    STARTED.append(worker)
    return worker


def finish(worker: subprocess.Popen, timeout: float = 120) -> tuple[dict, list[dict], str]:
    """Wait for a worker; return its summary, the decisions it printed and its stderr."""
    try:
        out, err = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tail = worker.stderr.read().decode()[-3000:] if isinstance(worker, WorkerProcess) else ""  # type: ignore[union-attr]
        raise AssertionError(f"the worker did not exit in {timeout:.0f} s; its last log lines:\n{tail}") from None
    assert worker.returncode == 0, f"worker exited {worker.returncode}: {err.decode()[-2000:]}"
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and "summary" in lines[-1], f"no summary line in {out[-500:]!r}"
    summary = lines[-1]["summary"]
    summary.pop("worker", None)  # this process's own counts; the rest is model state
    return summary, lines[:-1], err.decode()


def finish_with_counts(worker: subprocess.Popen, timeout: float = 120) -> tuple[dict, dict]:
    """Like :func:`finish`, but also this worker process's own counts."""
    out, err = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, f"worker exited {worker.returncode}: {err.decode()[-2000:]}"
    summary = orjson.loads(out.splitlines()[-1])["summary"]
    return summary, summary.pop("worker")


def produce(bootstrap: str, topic: str, values: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    n = 0
    for key, value in values:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush()
    producer.close()
    return n


def produce_paced(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes | None]], rate: float) -> int:
    """:func:`produce` at a steady ``rate`` messages per second."""
    start = time.monotonic()

    def paced():
        for i, value in enumerate(values):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield value

    return produce(bootstrap, topic, paced())


def read_topic(bootstrap: str, topic: str, expected: int, deadline_s: float = 60.0) -> list:
    """All records of ``topic`` from the start, read_committed, until ``expected`` or the deadline."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        deadline = time.monotonic() + deadline_s
        parts = None
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300, max_records=5000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def committed(bootstrap: str, group: str) -> int:
    """The sum of ``group``'s committed offsets (0 before it has committed any)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return sum(o.offset for o in offsets.values() if o.offset > 0)
    except Exception:  # noqa: BLE001 - the group may not exist yet
        return 0
    finally:
        admin.close()


def wait_committed(bootstrap: str, group: str, at_least: int, worker: subprocess.Popen, deadline_s: float = 120) -> None:
    """Wait until ``group`` has committed ``at_least`` offsets; fail if ``worker`` dies first."""
    deadline = time.monotonic() + deadline_s
    while committed(bootstrap, group) < at_least:
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"the worker did not commit {at_least} offsets in {deadline_s} s"
        time.sleep(0.2)


def predictions_by_id(bootstrap: str, prefix: str) -> dict[str, list[tuple]]:
    """Every prediction record of a request on ``<prefix>.predictions`` up to its end, as
    ``(id, arm, version, prediction)``, by request id (labeled events' records have no id)."""
    topic = f"{prefix}.predictions"
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        found: dict[str, list[tuple]] = defaultdict(list)
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=500, max_records=10_000).values():
                for record in batch:
                    r = orjson.loads(record.value)
                    if r["id"] is not None:
                        found[r["id"]].append((r["id"], r["arm"], r["version"], r["prediction"]))
        return dict(found)
    finally:
        consumer.close()
