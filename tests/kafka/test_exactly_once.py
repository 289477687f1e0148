"""Exactly-once model state on a real broker (issue 4's acceptance): kill -9, rebalance,
broker restart and tampered checkpoints leave the final state equal to an uninterrupted run."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import threading
import time
import uuid

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from consumers.admin import TopicSpec, ensure_topics
from consumers.checkpoints import PARTITIONS_HEADER, read_checkpoints
from stream_cd import subscribe_decisions
from stream_cd.simulate.datasets import generate
from stream_cd.pipeline import model_key_of_record
from stream_cd.state.signing import load_state
from tests.kafka.pipeline_helpers import (cli, finish, finish_with_counts, produce, produce_paced, start_worker,
                                        story_of, wait_committed)

pytestmark = pytest.mark.kafka

STATE_KEY = "test-state-key-0123456789abcdef"
N = 50_000
FLAGS = ("--model", "logreg", "--shadow", "hoeffding-tree", "--commit-every-events", "4000",
         "--commit-every-seconds", "1", "--version-every", "5000")


@pytest.fixture(autouse=True)
def state_key(monkeypatch):
    monkeypatch.setenv("STREAM_CD_STATE_KEY", STATE_KEY)


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    return [orjson.dumps(e) for e in generate("agrawal", N, seed=5, drift_at=30_000)]


@pytest.fixture(scope="module")
def probe() -> list[dict]:
    return [e["x"] for e in generate("agrawal", 1_000, seed=99)]


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, stream, probe) -> tuple:
    """The uninterrupted run on one partition and one key, run once for the tests that
    compare a kill, a broker restart or a tampered checkpoint with it (the run is
    deterministic: where it runs does not change what it computes)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STREAM_CD_STATE_KEY", STATE_KEY)
        return _reference(kafka_bootstrap, f"test.exactly_once.{uuid.uuid4().hex[:8]}.ref", stream, probe)


def _keyed(events: list[bytes], keys: int = 1) -> list[tuple[bytes, bytes]]:
    """The events as (key, value) messages: all of model key ``default``, or spread over
    ``keys`` model keys ``m0``, ``m1``, ... in turn."""
    if keys == 1:
        return [(b"default", raw) for raw in events]
    return [(f"m{i % keys}".encode(), orjson.dumps({**orjson.loads(raw), "key": f"m{i % keys}"}))
            for i, raw in enumerate(events)]


def _fill(bootstrap: str, prefix: str, events: list[bytes], partitions: int = 1, keys: int = 1) -> None:
    ensure_topics(bootstrap, [TopicSpec(f"{prefix}.events", partitions=partitions)])
    produce(bootstrap, f"{prefix}.events", _keyed(events, keys))


def _final_models(bootstrap: str, prefix: str, probe: list[dict]) -> dict[str, list]:
    """Each model key's champion predictions on the probe set, from its newest checkpoint."""
    found = read_checkpoints(bootstrap, f"{prefix}.checkpoints")
    out = {}
    for key, versions in found.items():
        if model_key_of_record(key) is None:
            continue
        offset, _, blob = versions[-1]
        slot = load_state(blob, STATE_KEY.encode(), key, key)
        out[model_key_of_record(key)] = [slot.champion.model.predict_one(x) for x in probe]
    return out


def _reference(bootstrap: str, prefix: str, events, probe, partitions=1, keys=1):
    _fill(bootstrap, prefix, events, partitions, keys)
    worker = start_worker(bootstrap, prefix, *FLAGS, "--worker-id", "ref", "--idle-exit", "4")
    summary, _, _ = finish(worker, timeout=300)
    decisions = list(subscribe_decisions(bootstrap, f"{prefix}.decisions", from_beginning=True))
    return summary, decisions, _final_models(bootstrap, prefix, probe)


def _assert_same(bootstrap, prefix, summary, reference, probe, story: str = ""):
    """The run's summary, its committed decisions and its final models equal the reference's;
    ``story`` (what the worker logged) goes into the message when they do not."""
    ref_summary, ref_decisions, ref_models = reference
    assert summary == ref_summary, story
    decisions = list(subscribe_decisions(bootstrap, f"{prefix}.decisions", from_beginning=True))
    by_key = lambda ds: sorted(ds, key=lambda d: (d["model_key"], d["events_seen"], d["decision_id"]))  # noqa: E731
    ordered, ref_ordered = by_key(decisions), by_key(ref_decisions)
    ids, ref_ids = [d["decision_id"] for d in ordered], [d["decision_id"] for d in ref_ordered]
    assert ids == ref_ids, (f"decisions missing: {sorted(set(ref_ids) - set(ids))}, extra: "
                            f"{sorted(set(ids) - set(ref_ids))}, repeated: {len(ids) - len(set(ids))}\n{story}")
    assert ordered == ref_ordered
    assert len({d["decision_id"] for d in decisions}) == len(decisions)
    assert _final_models(bootstrap, prefix, probe) == ref_models


def _killed_three_times(bootstrap: str, prefix: str, at: tuple[int, ...], seed: int) -> dict:
    """Kill -9 the worker once it has committed each of ``at`` offsets, then let a last one
    finish the stream; return its summary."""
    group = f"{prefix}.workers"
    delays = random.Random(seed)  # the kills land anywhere in a commit interval, in a transaction or not
    for at_least in at:
        worker = start_worker(bootstrap, prefix, *FLAGS, "--worker-id", "w1")
        wait_committed(bootstrap, group, at_least, worker)
        time.sleep(delays.uniform(0.0, 1.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    worker = start_worker(bootstrap, prefix, *FLAGS, "--worker-id", "w1", "--idle-exit", "4")
    return finish(worker, timeout=300)[0]


def test_kill_minus_nine_three_times_equals_uninterrupted_run(kafka_bootstrap, topic_prefix, stream, probe, reference):
    assert reference[0]["models"]["default"]["retrains"] >= 1  # the stream's drift is in the state

    prefix = topic_prefix + "killed"
    _fill(kafka_bootstrap, prefix, stream)
    summary = _killed_three_times(kafka_bootstrap, prefix, (8_000, 24_000, 40_000), seed=4)
    _assert_same(kafka_bootstrap, prefix, summary, reference, probe)

    listed = subprocess.run(
        cli("checkpoints", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--json"),
        capture_output=True, timeout=60, env={**os.environ, "STREAM_CD_STATE_KEY": STATE_KEY},
    )
    assert listed.returncode == 0, listed.stderr.decode()
    rows = {row["key"]: row for row in map(orjson.loads, listed.stdout.splitlines())}
    model = summary["models"]["default"]
    assert rows["default"]["version"] == model["champion_version"]
    assert rows["default"]["events_seen"] == model["events_seen"] == N
    assert rows["default"]["offsets"] == {"0": N} and rows["partition:0"]["offsets"] == {"next": N}
    assert rows["default"]["size"] > 0 and "refused" not in rows["default"]


def _group_members(bootstrap: str, group: str) -> list[list[int]]:
    """The partitions each member of ``group`` holds."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        members = admin.describe_groups([group])[group]["members"]
        assigned = [m["member_assignment"] or {} for m in members]  # empty while the group rebalances
        return [sorted(p for a in each.get("assigned_partitions", ()) for p in a["partitions"]) for each in assigned]
    finally:
        admin.close()


def _committed_by_partition(bootstrap: str, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {tp.partition: o.offset for tp, o in admin.list_group_offsets(group).get(group, {}).items()}
    finally:
        admin.close()


def _wait_both_work(bootstrap: str, group: str, workers, deadline_s: float = 120) -> None:
    """Wait until two members hold partitions and every partition with events (the four keys
    fall on two of them) has committed progress since: each worker holds one of those, so both
    have taken part (on a busy machine the second can take many seconds to start)."""
    deadline = time.monotonic() + deadline_s
    while not (len(held := _group_members(bootstrap, group)) == 2 and all(held)):
        assert all(w.poll() is None for w in workers) and time.monotonic() < deadline, f"members hold {held}"
        time.sleep(0.2)
    before = _committed_by_partition(bootstrap, group)
    while True:
        now = _committed_by_partition(bootstrap, group)
        if before and all(now.get(p, 0) > offset for p, offset in before.items()):
            return
        assert all(w.poll() is None for w in workers) and time.monotonic() < deadline, f"committed {before} -> {now}"
        time.sleep(0.2)


def test_a_worker_joining_and_leaving_mid_stream_changes_nothing(kafka_bootstrap, topic_prefix, stream, probe):
    reference = _reference(kafka_bootstrap, topic_prefix + "ref", stream, probe, partitions=4, keys=4)

    prefix = topic_prefix + "rebalanced"
    group = f"{prefix}.workers"
    _fill(kafka_bootstrap, prefix, stream[:10_000], partitions=4, keys=4)
    first = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1", "--idle-exit", "6")
    wait_committed(kafka_bootstrap, group, 8_000, first)
    second = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w2")
    # the rest of the stream arrives while both work, at about 4,000 events/s
    rest = threading.Thread(target=produce_paced, args=(kafka_bootstrap, f"{prefix}.events", _keyed(stream, 4)[10_000:], 4_000))
    rest.start()
    _wait_both_work(kafka_bootstrap, group, (first, second))

    second.send_signal(signal.SIGTERM)  # a graceful leave: finish the batch, commit, leave the group
    started = time.monotonic()
    _, left = finish_with_counts(second, timeout=30)
    assert time.monotonic() - started < 10
    assert left["consumed"] > 0 and left["stopped_by"] == "signal"
    rest.join()

    summary, _, _ = finish(first, timeout=300)
    _assert_same(kafka_bootstrap, prefix, summary, reference, probe)


def test_tampered_and_unsigned_checkpoints_are_refused_and_the_last_good_one_is_used(
    kafka_bootstrap, topic_prefix, stream, probe, reference
):
    prefix = topic_prefix + "tampered"
    _fill(kafka_bootstrap, prefix, stream)
    worker = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1", "--max-events", "30000",
                          "--snapshot-every-events", "4000")
    finish(worker, timeout=300)
    versions = read_checkpoints(kafka_bootstrap, f"{prefix}.checkpoints")["model:default"]
    assert len({slot for _, slot, _ in versions}) == 3, "need older good snapshots to fall back on"
    _, slot, blob = versions[-1]
    newest = bytearray(blob)
    newest[len(newest) // 2] ^= 0x01  # one byte flipped
    unsigned = pickle.dumps(load_state(blob, STATE_KEY.encode(), "default", "model:default"))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(f"{prefix}.checkpoints", key=f"s{slot}/model:default".encode(), value=bytes(newest), partition=0,
                  headers=[(PARTITIONS_HEADER, b"0")])
    producer.send(f"{prefix}.checkpoints", key=f"s{(slot + 1) % 3}/model:default".encode(), value=unsigned,
                  partition=0)  # no header at all
    producer.flush()
    producer.close()

    worker = start_worker(kafka_bootstrap, prefix, *FLAGS, "--worker-id", "w1", "--idle-exit", "4")
    summary, _, stderr = finish(worker, timeout=300)
    assert "refused checkpoint of model key 'default'" in stderr
    assert "it is not signed" in stderr and "its signature does not match" in stderr
    assert "restored model key 'default' from an older snapshot" in stderr
    assert summary == reference[0]
    assert _final_models(kafka_bootstrap, prefix, probe) == reference[2]


def _own_broker(tmp_path):
    """A broker of the test's own (to stop or freeze), and its address; skips, as the
    session broker does, where none can start, unless Kafka is required."""
    from consumers.admin import broker_cluster_id
    from stream_cd.broker import LocalBroker
    from stream_cd.broker.config import free_port

    broker = LocalBroker(tmp_path / "kafka")
    try:
        return broker, broker.start(broker_cluster_id, port=free_port(), timeout_s=90)
    except Exception as err:  # noqa: BLE001 - no java/mvn here: same rule as the session broker
        if os.environ.get("STREAM_CD_REQUIRE_KAFKA") == "1":
            raise
        pytest.skip(f"cannot start a broker of our own: {err}")


def test_the_worker_rides_out_a_broker_restart(tmp_path, topic_prefix, stream, probe, reference):
    from consumers.admin import broker_cluster_id

    broker, bootstrap = _own_broker(tmp_path)
    port = int(bootstrap.rsplit(":", 1)[1])
    try:
        prefix = topic_prefix + "restarted"
        group = f"{prefix}.workers"
        _fill(bootstrap, prefix, stream)
        worker = start_worker(bootstrap, prefix, *FLAGS, "--worker-id", "w1")  # no idle exit: it runs through the outage
        wait_committed(bootstrap, group, 15_000, worker)
        broker.stop()
        time.sleep(10)
        broker.start(broker_cluster_id, port=port, timeout_s=90)
        wait_committed(bootstrap, group, len(stream), worker, deadline_s=400)  # back, and through to the end
        worker.send_signal(signal.SIGTERM)
        summary, _, log = finish(worker, timeout=120)
        _assert_same(bootstrap, prefix, summary, reference, probe, story=story_of(log))
    finally:
        broker.stop()


def test_a_transaction_whose_output_was_never_delivered_does_not_commit(tmp_path, topic_prefix):
    """kafka-python leaves it to its user to abort a transaction one of whose messages
    failed for good (here: expired while the broker was frozen); the transport's commit
    checks every delivery and fails instead of committing the transaction without it."""
    from consumers.checkpoints import committed_records
    from consumers.kafka_transport import KafkaTransport
    from stream_cd.errors import TransportError

    broker, bootstrap = _own_broker(tmp_path)  # not the session's broker: this test freezes it
    try:
        out = f"{topic_prefix}out"
        ensure_topics(bootstrap, [TopicSpec(f"{topic_prefix}events"), TopicSpec(out), TopicSpec(f"{topic_prefix}cp")])
        transport = KafkaTransport(bootstrap, f"{topic_prefix}events", f"{topic_prefix}group",
                                   checkpoints_topic=f"{topic_prefix}cp", transactional_id=f"{topic_prefix}tx",
                                   fetch_process=False,  # a delivery timeout a frozen broker outlasts:
                                   producer_options={"delivery_timeout_ms": 1500, "request_timeout_ms": 1000,
                                                     "linger_ms": 0})
        transport.send(out, b"k", b"delivered, in the transaction")  # the partition joins the transaction
        transport.producer.flush()
        pid = broker.status().pid
        os.kill(pid, signal.SIGSTOP)  # the next message's produce request times out, and it expires
        try:
            transport.send(out, b"k", b"never delivered")
            time.sleep(3.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(TransportError, match="1 of 2 output messages were not delivered"):
            transport.commit()
        transport.reset()  # as the worker's recovery does: the open transaction is aborted
        transport.send(out, b"k", b"again")
        transport.commit()
        transport.close()
        assert [r.value for r in committed_records(bootstrap, out)] == [b"again"]
    finally:
        broker.stop()
