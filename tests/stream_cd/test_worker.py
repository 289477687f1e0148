"""The worker loop on the embedded transport: dead letters, decisions, limits, stop."""

from __future__ import annotations

import random
import threading

import orjson
import pytest

from stream_cd.config import PipelineConfig
from stream_cd.simulate.datasets import generate
from stream_cd.embedded import EmbeddedTransport
from stream_cd.state.schedule import SnapshotSchedule
from stream_cd.pipeline import Pipeline
from stream_cd.transport import DEAD_LETTER_ORIGIN, DEAD_LETTER_REASON, DEAD_LETTER_TRUNCATED, Topics
from stream_cd.learning.triggers import TriggerSettings
from stream_cd.idle import MAX_IDLE_STALLS
from stream_cd.worker import run_worker

# One malformed message of every kind in issue 3, item 1, with a word its reason must contain.
MALFORMED: list[tuple[bytes, str]] = [
    (b"\xff\xfe not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"x": {"a": 1e999}, "y": true}', "infinity"),
    (b'{"x": {"a": NaN}, "y": true}', "not valid JSON"),
    (b"[1, 2, 3]", "event is a list"),
    (b'"just a string"', "event is a string"),
    (b'{"y": true}', "feedback (y without x) needs the id of its request"),
    (b'{"x": [1, 2], "y": true}', "x is a list"),
    (b'{"x": {"salary": [1, 2]}, "y": true}', "feature 'salary' is a list"),
    (b'{"x": {"salary": {"a": 1}}, "y": true}', "feature 'salary' is an object"),
    (b'{"x": {"salary": null}, "y": true}', "feature 'salary' is null"),
    (b'{"x": {"salary": 1.0}, "y": 0.5}', "classification task needs a class"),
    (b'{"x": {"salary": 1.0}, "y": [true]}', "label y is a list"),
    (b'{"key": 7, "x": {"salary": 1.0}, "y": true}', "key is 7"),
    (b'{"ts": "noon", "x": {"salary": 1.0}, "y": true}', "ts is 'noon'"),
    (orjson.dumps({"x": {"salary": 1.0, "pad": "p" * 5000}, "y": True}), "over the limit"),
]


def mixed_stream(n_valid: int, n_bad: int, seed: int = 0) -> tuple[list[bytes], list[int]]:
    rng = random.Random(seed)
    valid = [orjson.dumps(e) for e in generate("agrawal", n_valid, seed=seed)]
    bad = [MALFORMED[i % len(MALFORMED)][0] for i in range(n_bad)]
    stream = valid + bad
    rng.shuffle(stream)
    bad_positions = [i for i, raw in enumerate(stream) if raw in set(bad)]
    return stream, bad_positions


def test_malformed_messages_become_dead_letters_with_reason_origin_and_original_bytes() -> None:
    stream, bad_positions = mixed_stream(1000, 200)
    pipeline = Pipeline(PipelineConfig(model="hoeffding-tree", shadow="logreg", max_event_bytes=4096))
    topics = Topics("t")
    transport = EmbeddedTransport(stream, topic=topics.events)
    stats = run_worker(transport, pipeline, topics, batch_size=97)
    assert stats.consumed == 1200 and stats.dead_letters == 200 and stats.stopped_by == "end-of-input"
    summary = pipeline.summary()
    assert summary["events"] == 1200 and summary["invalid"] == 200
    assert summary["models"]["default"]["learned"] == 1000
    letters = transport.topics["t.dead-letter"]
    assert len(letters) == 200
    for letter, position in zip(letters, bad_positions):
        headers = dict(letter.headers)
        assert set(headers) == {DEAD_LETTER_REASON, DEAD_LETTER_ORIGIN} == {"stream-cd.reason", "stream-cd.origin"}
        assert headers[DEAD_LETTER_ORIGIN] == f"t.events/0/{position}".encode()
        assert letter.value == stream[position]
        expected_word = next(word for raw, word in MALFORMED if raw == letter.value)
        assert expected_word in headers[DEAD_LETTER_REASON].decode()
    assert transport.committed == 1200


def test_a_dead_letter_larger_than_the_topic_takes_keeps_the_start_of_its_message_and_its_size() -> None:
    big = MALFORMED[-1][0]  # over the event limit, and over what this dead-letter topic takes
    stream = [orjson.dumps(e) for e in generate("agrawal", 20, seed=1)] + [big, b"oops"]
    topics = Topics("t")
    transport = EmbeddedTransport(stream, topic=topics.events)
    pipeline = Pipeline(PipelineConfig(model="logreg", max_event_bytes=4096))
    stats = run_worker(transport, pipeline, topics, dead_letter_max_bytes=1000)
    assert stats.dead_letters == 2 and pipeline.summary()["models"]["default"]["learned"] == 20
    cut, whole = transport.topics["t.dead-letter"]
    assert cut.value == big[:1000] and dict(cut.headers)[DEAD_LETTER_TRUNCATED] == str(len(big)).encode()
    assert dict(cut.headers)[DEAD_LETTER_ORIGIN] == b"t.events/0/20" and "over the limit" in dict(cut.headers)[DEAD_LETTER_REASON].decode()
    assert whole.value == b"oops" and DEAD_LETTER_TRUNCATED not in dict(whole.headers)


def test_a_model_that_raises_is_a_dead_letter_and_the_worker_goes_on() -> None:
    good = [orjson.dumps({"x": {"f": float(i)}, "y": i % 2 == 0}) for i in range(20)]
    poison = b'{"x": {"f": "red"}, "y": true}'
    stream = good[:10] + [poison] + good[10:]
    transport = EmbeddedTransport(stream)
    pipeline = Pipeline(PipelineConfig(model="logreg", drift="none"))
    stats = run_worker(transport, pipeline, Topics())
    assert stats.consumed == 21 and stats.dead_letters == 1
    (letter,) = transport.topics["stream-cd.dead-letter"]
    assert letter.value == poison
    assert b"feature 'f' is 'red', a string" in dict(letter.headers)["stream-cd.reason"]
    assert dict(letter.headers)["stream-cd.origin"] == b"stream-cd.events/0/10"
    assert pipeline.summary()["models"]["default"]["learned"] == 20


def test_decisions_are_sent_keyed_by_model_key_and_handed_to_the_callback() -> None:
    events = [orjson.dumps({**e, "key": "shop"}) for e in generate("agrawal", 1000, seed=1)]
    transport = EmbeddedTransport(events)
    seen = []
    pipeline = Pipeline(PipelineConfig(model="logreg", drift="none", min_sample=250, triggers=TriggerSettings(volume_every=250)))
    stats = run_worker(transport, pipeline, Topics(), on_decision=seen.append)
    sent = transport.topics["stream-cd.decisions"]
    assert stats.decisions == len(sent) == len(seen) == 4
    assert [m.key for m in sent] == [b"shop"] * 4
    assert [orjson.loads(m.value) for m in sent] == [d.to_dict() for d in seen]
    assert [d.events_seen for d in seen] == [250, 500, 750, 1000]
    assert "stream-cd.dead-letter" not in transport.topics


def test_max_events_counts_every_consumed_message() -> None:
    stream, _ = mixed_stream(300, 50, seed=2)
    transport = EmbeddedTransport(stream)
    pipeline = Pipeline(PipelineConfig(model="logreg", drift="none"))
    stats = run_worker(transport, pipeline, Topics(), max_events=123, batch_size=50)
    assert stats.consumed == 123 and stats.stopped_by == "max-events"
    assert pipeline.summary()["events"] == 123 and transport.position == 123 and transport.committed == 123
    # the rest is still there for the next run
    rest = run_worker(transport, Pipeline(PipelineConfig(model="logreg", drift="none")), Topics())
    assert rest.consumed == 350 - 123


def test_stop_event_finishes_the_batch_and_exits() -> None:
    events = [orjson.dumps(e) for e in generate("agrawal", 1000, seed=4)]
    transport = EmbeddedTransport(events)
    stop = threading.Event()
    stats = run_worker(transport, Pipeline(), Topics(), batch_size=100, stop=stop, on_batch=lambda n: stop.set())
    assert stats.stopped_by == "signal" and stats.consumed == 100 and stats.batches == 1
    assert transport.committed == 100
    already = threading.Event()
    already.set()
    assert run_worker(EmbeddedTransport(events), Pipeline(), Topics(), stop=already).consumed == 0


def test_a_key_whose_only_checkpoint_is_tampered_starts_afresh_and_says_so(tmp_path, caplog) -> None:
    from stream_cd.embedded import DirectoryStore

    key = b"k" * 32
    events = [b'{"x": {"a": %d}, "y": %s}' % (i, b"true" if i % 2 else b"false") for i in range(100)]
    store = DirectoryStore(tmp_path)
    run_worker(EmbeddedTransport(events[:60], store=store), Pipeline(), Topics(), state_key=key)
    target = tmp_path / "s0%2Fmodel%3Adefault.ckpt"
    blob = bytearray(target.read_bytes())
    blob[-5] ^= 0xFF
    target.write_bytes(bytes(blob))

    pipeline = Pipeline()
    with caplog.at_level("WARNING"):
        stats = run_worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)), pipeline, Topics(), state_key=key)
    assert stats.refused_checkpoints == 1
    assert "refused checkpoint of model key 'default'" in caplog.text
    assert "cannot restore model key 'default': no valid checkpoint is left; it starts afresh" in caplog.text
    # the partition record was good, so the input resumed at 60 and the key relearned from there only
    assert pipeline.summary()["events"] == 100 and pipeline.models["default"].learned == 40


def _sea_events(n: int) -> list[bytes]:
    import orjson

    from stream_cd.simulate.datasets import generate

    return [orjson.dumps(e) for e in generate("sea", n, seed=21)]


def test_a_tampered_newest_checkpoint_falls_back_to_the_previous_one_and_replays_exactly(tmp_path) -> None:
    from stream_cd.config import PipelineConfig
    from stream_cd.embedded import DirectoryStore

    key, events = b"k" * 32, _sea_events(400)
    config = PipelineConfig(model="hoeffding-tree", drift="none")
    reference = Pipeline(config)
    run_worker(EmbeddedTransport(events), reference, Topics())

    options = {"state_key": key, "batch_size": 50, "commit_every_events": 100}
    often = SnapshotSchedule(every_events=100)  # snapshots at events 100, 200 and at the end, 250
    run_worker(EmbeddedTransport(events[:250], store=DirectoryStore(tmp_path)), Pipeline(config, snapshots=often),
               Topics(), **options)
    slots = sorted(tmp_path.glob("s*%2Fmodel%3Adefault.ckpt"), key=lambda f: f.read_bytes()[:8])
    assert len(slots) == 3
    newest = slots[-1]
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    newest.write_bytes(bytes(blob))

    resumed = Pipeline(config)
    stats = run_worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)), resumed, Topics(), **options)
    assert stats.refused_checkpoints == 1
    assert resumed.summary() == reference.summary()


def test_model_keys_that_look_like_partition_records_keep_their_own_state(tmp_path) -> None:
    import orjson

    from stream_cd.embedded import DirectoryStore

    key = b"k" * 32
    odd = [orjson.dumps({"key": k, "x": {"a": i}, "y": i % 2 == 0}) for i in range(60) for k in ("partition:0", "partition:x")]
    first = Pipeline()
    run_worker(EmbeddedTransport(odd[:60], store=DirectoryStore(tmp_path)), first, Topics(), state_key=key)
    second = Pipeline()
    run_worker(EmbeddedTransport(odd, store=DirectoryStore(tmp_path)), second, Topics(), state_key=key)
    models = second.summary()["models"]
    assert sorted(models) == ["partition:0", "partition:x"]
    assert models["partition:0"]["learned"] == models["partition:x"]["learned"] == 60
    assert second.summary()["events"] == 120


class _FailingTransport(EmbeddedTransport):
    """An embedded transport that fails a given number of times, like a broker going away,
    and recovers as a rejoin does."""

    def __init__(self, source, failures: int) -> None:
        super().__init__(source)
        self.failures = failures
        self.resets = 0

    def _fail_if_due(self, reason: str) -> None:
        if self.failures:
            self.failures -= 1
            from stream_cd.errors import TransportError

            raise TransportError(reason)

    def reset(self) -> None:
        """Like a rejoin: uncommitted messages come again, and the partition is assigned anew."""
        self.resets += 1
        self.seek(0, self.committed)
        if self.store is not None:
            self._events.append(("assigned", [0]))


class _FlakyTransport(_FailingTransport):
    """Its sends fail."""

    def send(self, topic, key, value, headers=None) -> None:
        self._fail_if_due("the broker went away")
        super().send(topic, key, value, headers)


_MIXED = [b"not json", b'{"x": {"a": 1}, "y": true}', b'{"x": {"a": 2}, "y": false}'] * 10


def _assert_rolls_back_exactly(transport: _FailingTransport, tmp_path) -> None:
    """With state, ``transport``'s two failures are rolled back: nothing lost, nothing
    counted or learned twice."""
    from stream_cd.embedded import DirectoryStore

    reference = Pipeline()
    run_worker(EmbeddedTransport(_MIXED), reference, Topics())

    transport.store = DirectoryStore(tmp_path)
    pipeline = Pipeline()
    run_worker(transport, pipeline, Topics(), batch_size=5, state_key=b"k" * 32, commit_every_events=5)
    assert transport.resets == 2
    assert transport.committed == len(_MIXED)
    assert pipeline.summary() == reference.summary()


def test_a_failing_send_rolls_back_to_the_last_commit_and_repeats_nothing(tmp_path) -> None:
    _assert_rolls_back_exactly(_FlakyTransport(iter(_MIXED), failures=2), tmp_path)


def test_at_least_once_a_failing_send_loses_nothing() -> None:
    transport = _FlakyTransport(iter(_MIXED), failures=2)
    pipeline = Pipeline()
    run_worker(transport, pipeline, Topics(), batch_size=5)
    assert transport.resets == 2
    summary = pipeline.summary()
    assert summary["invalid"] >= 10 and summary["models"]["default"]["learned"] >= 20


def test_a_transport_that_keeps_failing_stops_the_worker_with_a_clear_error() -> None:
    import pytest

    from stream_cd.errors import TransportError
    from stream_cd.worker import MAX_FAILURES

    transport = _FlakyTransport(iter(_MIXED), failures=10**6)
    with pytest.raises(TransportError, match=f"giving up after {MAX_FAILURES} failures in a row"):
        run_worker(transport, Pipeline(), Topics(), batch_size=5)


class _LandsLaterTransport(_FailingTransport):
    """Commits not waited for land at the next poll or commit, as on Kafka; the first
    ``failures`` of them fail there."""

    def __init__(self, source, failures: int) -> None:
        super().__init__(source, failures)
        self._flying: tuple[list, int] | None = None

    def commit(self, checkpoints=(), *, wait=True) -> None:
        self._land()
        self._flying = (list(checkpoints), self.position)
        if wait:
            self._land()

    def _land(self) -> None:
        if self._flying is None:
            return
        (checkpoints, position), self._flying = self._flying, None
        self._fail_if_due("commit failed: the broker went away")
        if checkpoints and self.store is not None:
            self.store.save(checkpoints)
        del self._read[: position - self.committed]
        self.committed = position

    def poll(self, max_records, timeout_s):
        self._land()
        return super().poll(max_records, timeout_s)

    def reset(self) -> None:
        self._flying = None
        super().reset()


def test_commits_that_fail_after_the_worker_went_on_roll_back_and_repeat_nothing(tmp_path) -> None:
    _assert_rolls_back_exactly(_LandsLaterTransport(iter(_MIXED), failures=2), tmp_path)


def test_commits_that_keep_failing_after_the_worker_went_on_stop_it() -> None:
    import pytest

    from stream_cd.errors import TransportError
    from stream_cd.worker import MAX_FAILURES

    # one more failure than allowed: each commit started in between must not count as landed
    transport = _LandsLaterTransport(iter(_MIXED), failures=MAX_FAILURES + 1)
    with pytest.raises(TransportError, match=f"giving up after {MAX_FAILURES} failures in a row"):
        run_worker(transport, Pipeline(), Topics(), batch_size=5, commit_every_events=5)


class _SlowToFailTransport(EmbeddedTransport):
    """Nothing to read at first; then a commit that fails only after a long wait (a broker
    that went away); after the recovery the messages arrive."""

    def __init__(self, source: list[bytes], clock: list[float]) -> None:
        super().__init__([])
        self.later = source
        self.clock = clock
        self.failed = False
        self.warming = 0

    def poll(self, max_records, timeout_s):
        self.clock[0] += timeout_s
        if self.warming:  # a new consumer takes a moment before its first messages
            self.warming -= 1
            return []
        return super().poll(max_records, timeout_s)

    def commit(self, checkpoints=(), *, wait=True) -> None:
        if not self.failed and self.later:
            from stream_cd.errors import TransportError

            self.failed = True
            self.clock[0] += 60.0  # the commit hangs for a minute, then gives up
            raise TransportError("commit did not finish in 60 s")
        super().commit(checkpoints)

    def reset(self) -> None:
        self._source = iter(self.later)  # the messages arrive once the broker is back
        self.later = []
        self.warming = 3


def test_an_outage_and_the_recovery_from_it_do_not_count_as_idle(monkeypatch) -> None:
    import stream_cd.worker as worker_module

    clock = [0.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    stream = [orjson.dumps(e) for e in generate("agrawal", 30, seed=1)]
    transport = _SlowToFailTransport(stream, clock)
    transport.assignment = lambda: [0]  # holds its partition throughout
    pipeline = Pipeline()
    worker = worker_module.Worker(transport, pipeline, Topics(), commit_every_s=1.0)
    worker._uncommitted = 1  # something to commit when the idle polls make one due
    stats = worker.run(idle_exit=25.0, end_of_input_exits=False)
    assert transport.failed and stats.stopped_by == "idle"
    assert pipeline.summary()["models"]["default"]["learned"] == 30  # not given up on before they came


class _StalledTransport(EmbeddedTransport):
    """A reading that stops halfway while the partition has more (a stuck consumer), for
    ``stalled_polls`` polls, then goes on; ``behind`` says what is left."""

    def __init__(self, source: list[bytes], clock: list[float], stalled_polls: int) -> None:
        super().__init__(source)
        self.total, self.read, self.clock = len(source), 0, clock
        self.stalled_polls = stalled_polls
        self.asked = 0

    def poll(self, max_records, timeout_s):
        self.clock[0] += timeout_s
        if self.read >= self.total // 2 and self.stalled_polls:
            self.stalled_polls -= 1
            return []
        messages = super().poll(min(max_records, 5), timeout_s)
        self.read += len(messages)
        return messages

    def behind(self):
        self.asked += 1
        return {0: self.total - self.read} if self.read < self.total else {}


def _stalled_run(monkeypatch, stalled_polls: int):
    import stream_cd.worker as worker_module

    clock = [0.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
    transport = _StalledTransport([orjson.dumps(e) for e in generate("agrawal", 40, seed=1)], clock, stalled_polls)
    pipeline = Pipeline()
    stats = worker_module.Worker(transport, pipeline, Topics()).run(idle_exit=5.0, end_of_input_exits=False)
    return transport, stats, pipeline.summary()["models"]["default"]["learned"]


def test_an_idle_exit_waits_while_its_partitions_are_behind_their_ends(monkeypatch) -> None:
    # stalled for 12.5 s of polls (0.5 s each), over two idle periods of 5 s: stuck, not idle
    transport, stats, learned = _stalled_run(monkeypatch, stalled_polls=25)
    assert learned == 40 and stats.stopped_by == "idle"  # every message read once the reading came back
    assert transport.asked == 3  # twice during the stall, and once at the end


def test_an_idle_exit_gives_up_on_a_reading_that_stays_stalled(monkeypatch) -> None:
    transport, stats, learned = _stalled_run(monkeypatch, stalled_polls=10_000)
    assert stats.stopped_by == "idle, reading stalled" and learned == 20
    assert transport.asked == MAX_IDLE_STALLS + 1


def test_an_idle_exit_that_cannot_tell_how_far_behind_it_is_waits_as_for_a_stall(monkeypatch) -> None:
    unknown = {"asked": 0}

    def cannot_tell():
        unknown["asked"] += 1
        return None  # the broker does not answer

    monkeypatch.setattr(_StalledTransport, "behind", lambda self: cannot_tell())
    _, stats, learned = _stalled_run(monkeypatch, stalled_polls=0)
    assert learned == 40 and stats.stopped_by == "idle, reading stalled"
    assert unknown["asked"] == MAX_IDLE_STALLS + 1


def _action_and_place(value: bytes) -> tuple:
    decision = orjson.loads(value)
    return decision["action"], decision["trigger"], decision["events_seen"], decision["champion_version"]


class _DecodingTransport(EmbeddedTransport):
    """An embedded transport that hands over decoded batches, as the Kafka transport's fetch process does."""

    def poll(self, max_records, timeout_s):
        from stream_cd.errors import InvalidEvent
        from stream_cd.events import decode_event
        from stream_cd.transport import DecodedBatch

        messages = super().poll(max_records, timeout_s)
        if not messages:
            return messages
        events = []
        for m in messages:
            try:
                events.append(decode_event(m.value))
            except InvalidEvent as err:
                events.append(err)
        columns = [[getattr(m, name) for m in messages] for name in ("offset", "timestamp", "key", "value")]
        return DecodedBatch(messages[0].topic, messages[0].partition, *columns, events)


def test_decoded_batches_are_learned_as_messages_are_and_outcomes_come_as_they_happen() -> None:
    raws, _ = mixed_stream(300, 40, seed=3)
    config = PipelineConfig(model="logreg", shadow="logreg", drift="adwin", version_every=50)
    reference, batched = Pipeline(config), Pipeline(config)
    plain = EmbeddedTransport(raws)
    run_worker(plain, reference, Topics(), batch_size=64)
    decoding = _DecodingTransport(raws)
    stats = run_worker(decoding, batched, Topics(), batch_size=64)
    assert batched.summary() == reference.summary() and stats.dead_letters == 40
    topics = Topics()
    for name in (topics.dead_letter, topics.decisions):  # the same outputs, in the same order
        ours = [(m.key, m.headers, m.value if name == topics.dead_letter else _action_and_place(m.value)) for m in decoding.topics[name]]
        theirs = [(m.key, m.headers, m.value if name == topics.dead_letter else _action_and_place(m.value)) for m in plain.topics[name]]
        assert ours == theirs and ours

    seen = []  # with an outcome hook, each outcome is handed over right after its event
    hooked = Pipeline(config)
    run_worker(_DecodingTransport(raws), hooked, Topics(), batch_size=64,
               on_outcome=lambda message, outcome: seen.append(hooked.events))
    assert seen == list(range(1, len(raws) + 1))


def test_a_key_too_large_again_after_it_was_saved_leaves_no_snapshot_to_restore_from(tmp_path) -> None:
    """Too large, then saved again (it shrank), then too large again: its snapshots of the time
    between are deleted too, so a restore starts it afresh instead of from an old snapshot that
    would silently skip the events since."""
    from stream_cd.config import PipelineConfig
    from stream_cd.embedded import DirectoryStore
    from stream_cd.worker import Worker

    events = _sea_events(1_500)
    batches = {"n": 0}

    def limit_by_batch(_: int) -> None:  # too large for 10 batches, then fits for 10, then too large
        batches["n"] += 1
        worker.max_snapshot_bytes = 100 if batches["n"] < 10 or batches["n"] >= 20 else 10**9

    worker = Worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)),
                    Pipeline(PipelineConfig(model="logreg", drift="none"), snapshots=SnapshotSchedule(every_events=50, ring=3)),
                    Topics(), state_key=b"k" * 32, commit_every_events=40, batch_size=16, on_batch=limit_by_batch,
                    max_snapshot_bytes=100)
    stats = worker.run()
    assert stats.checkpoints_written > 0 and stats.unsaved > 0  # saved in between, and unsaved at the end
    assert not list(tmp_path.glob("*model%3Adefault.ckpt"))


def test_a_snapshot_that_cannot_be_read_back_is_not_written_and_the_key_goes_on_unsaved(tmp_path) -> None:
    from stream_cd.config import PipelineConfig
    from stream_cd.embedded import DirectoryStore

    events = [b'{"x": {"u": %f}, "y": %s}' % (i / 400, b"true" if i > 200 else b"false") for i in range(400)]
    decisions: list = []
    config = PipelineConfig(model="tests.stream_cd.user_models:unloadable", drift="none", task="classification")
    stats = run_worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)),
                       Pipeline(config, snapshots=SnapshotSchedule(every_events=50)), Topics(), state_key=b"k" * 32,
                       commit_every_events=40, batch_size=16, on_decision=decisions.append)
    assert stats.consumed == 400 and stats.unsaved >= 3
    assert not list(tmp_path.glob("*model%3Adefault.ckpt"))  # no slot of the ring was spent on it
    unsaved = [d for d in decisions if d.action == "unsaved"]
    assert unsaved and "its snapshot cannot be read back" in unsaved[0].evidence["reason"]
    assert "this model cannot be loaded back" in unsaved[0].evidence["reason"]


class _Seekable(EmbeddedTransport):
    """The embedded transport over a list it can seek anywhere in, as Kafka can, and with the
    group's committed offset of a run before (a restarted worker's view)."""

    def __init__(self, events: list[bytes], committed: int, **options) -> None:
        super().__init__([], **options)
        self.events, self.committed = events, committed

    def poll(self, max_records: int, timeout_s: float):
        from stream_cd.transport import Message

        if not self._started:
            return super().poll(max_records, timeout_s)  # the assignment, restored before the first message
        end = min(len(self.events), self.position + max_records)
        batch = [Message(self.topic, 0, o, 0, None, self.events[o]) for o in range(self.position, end)]
        self.position = end
        return batch

    def seek(self, partition: int, offset: int) -> None:
        self.position = offset


def _with_bad_lines(n: int) -> list[bytes]:
    """``n`` SEA events, every 37th (from the 6th) not valid: dead letters to count."""
    events = _sea_events(n)
    events[5::37] = [b'{"x": "bad", "y": true}'] * len(events[5::37])
    return events


def _outputs(transport: EmbeddedTransport) -> tuple[list, list]:
    """The decisions a transport was sent, and the origins of its dead letters."""
    return ([m.value for m in transport.topics["stream-cd.decisions"]],
            [dict(m.headers)["stream-cd.origin"] for m in transport.topics["stream-cd.dead-letter"]])


def _refuse_newest_partition_records(directory, count: int) -> None:
    for record in sorted(directory.glob("s*%2Fpartition%3A0.ckpt"), key=lambda f: f.read_bytes()[:8])[-count:]:
        blob = bytearray(record.read_bytes())
        blob[-1] ^= 0x01
        record.write_bytes(bytes(blob))


def test_a_partition_restored_from_its_older_record_sends_nothing_again(tmp_path) -> None:
    """The newest partition record is refused: the restore resumes from the one before it and
    takes in again the messages up to the last commit, and none of their decisions or dead
    letters is sent a second time."""
    from stream_cd.config import PipelineConfig
    from stream_cd.embedded import DirectoryStore

    events = _with_bad_lines(1_200)
    config = PipelineConfig(model="logreg", shadow="logreg", drift="adwin", version_every=25)
    options = {"state_key": b"k" * 32, "commit_every_events": 200, "batch_size": 50}
    outputs = _outputs

    uninterrupted = EmbeddedTransport(events)
    reference = Pipeline(config, snapshots=SnapshotSchedule(every_events=50))
    run_worker(uninterrupted, reference, Topics(), **options)

    first = EmbeddedTransport(events[:700], store=DirectoryStore(tmp_path))
    run_worker(first, Pipeline(config, snapshots=SnapshotSchedule(every_events=50)), Topics(), **options)
    _refuse_newest_partition_records(tmp_path, 1)

    second = _Seekable(events, committed=700, store=DirectoryStore(tmp_path))
    resumed = Pipeline(config, snapshots=SnapshotSchedule(every_events=50))
    stats = run_worker(second, resumed, Topics(), **options)
    assert stats.refused_checkpoints == 1 and stats.consumed > len(events) - 700  # it read again before 700
    decided, dead = (a + b for a, b in zip(outputs(first), outputs(second)))
    assert (decided, dead) == outputs(uninterrupted) and len(dead) == len(events[5::37])
    assert resumed.summary() == reference.summary()


def test_a_key_idle_since_its_snapshot_does_not_make_a_restart_replay_from_its_last_event(tmp_path) -> None:
    import orjson

    from stream_cd.config import PipelineConfig
    from stream_cd.embedded import DirectoryStore

    events = [orjson.dumps({**orjson.loads(raw), "key": "idle" if i < 50 else "hot"})
              for i, raw in enumerate(_sea_events(2_050))]
    config = PipelineConfig(model="logreg", drift="none")
    run_worker(EmbeddedTransport(events, store=DirectoryStore(tmp_path)), Pipeline(config), Topics(),
               state_key=b"k" * 32)
    resumed = Pipeline(config)
    stats = run_worker(EmbeddedTransport(events + events[:10], store=DirectoryStore(tmp_path)), resumed, Topics(),
                       state_key=b"k" * 32)
    assert resumed.replayed == 0 and stats.consumed == 10  # only what came after the stop
    assert resumed.models["idle"].learned == 50 + sum(1 for raw in events[:10] if b'"idle"' in raw)


def test_a_quiet_replay_cut_short_by_a_crash_after_a_commit_stays_quiet_when_resumed(tmp_path) -> None:
    """The two newest partition records are refused; the worker falls back three commits,
    commits once during its quiet replay and is killed: the next restore still knows which
    messages were committed with their outputs before, and sends none of them again."""
    from stream_cd.config import PipelineConfig
    from stream_cd.embedded import DirectoryStore

    events = _with_bad_lines(1_200)
    config = PipelineConfig(model="logreg", shadow="logreg", drift="adwin", version_every=25)
    options = {"state_key": b"k" * 32, "commit_every_events": 200, "batch_size": 50}
    outputs = _outputs

    def schedule() -> SnapshotSchedule:
        return SnapshotSchedule(every_events=50)

    uninterrupted = EmbeddedTransport(events)
    run_worker(uninterrupted, Pipeline(config, snapshots=schedule()), Topics(), **options)
    first = EmbeddedTransport(events[:700], store=DirectoryStore(tmp_path))
    run_worker(first, Pipeline(config, snapshots=schedule()), Topics(), **options)
    _refuse_newest_partition_records(tmp_path, 2)

    class Killed(Exception):
        pass

    second = _Seekable(events, committed=700, store=DirectoryStore(tmp_path))
    commit = second.commit

    def commit_then_die(checkpoints=(), *, wait=True) -> None:
        commit(checkpoints, wait=wait)
        raise Killed(second.committed)

    second.commit = commit_then_die
    with pytest.raises(Killed, match="600"):  # inside the quiet replay, below the 700 committed before
        run_worker(second, Pipeline(config, snapshots=schedule()), Topics(), **options)
    third = _Seekable(events, committed=second.committed, store=DirectoryStore(tmp_path))
    run_worker(third, Pipeline(config, snapshots=schedule()), Topics(), **options)
    sent = [a + b + c for a, b, c in zip(outputs(first), outputs(second), outputs(third))]
    assert tuple(sent) == outputs(uninterrupted)
