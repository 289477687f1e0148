"""The worker loop, the same on every transport.

Poll a batch; run each message through the pipeline; send its dead letters
and decisions; commit when due. A commit is the one documented order:
outputs first, then the changed model state (the partition records and the
snapshots that are due, signed), then the input offsets — atomically where the
transport can (Kafka transactions), so that a crash either keeps all three or
none of them.

Commits come every ``commit_every_events`` messages or ``commit_every_s``
seconds, whichever is first, and at the end. Without a state key nothing is
checkpointed (at-least-once: a crash repeats at most the messages since the
last commit, and model state starts afresh). With one, partitions the
transport assigns are restored from their newest good snapshots and replayed
from their replay points (:mod:`stream_cd.state.schedule`); a revocation rolls
back to the last commit, from which the partitions' next owner resumes.

>>> from stream_cd.embedded import EmbeddedTransport
>>> from stream_cd.pipeline import Pipeline
>>> t = EmbeddedTransport([b'{"x": {"a": 1}, "y": true}', b'not json'])
>>> stats = Worker(t, Pipeline(), Topics()).run()
>>> stats.consumed, stats.dead_letters, t.committed
(2, 1, 2)
>>> dict(t.topics["stream-cd.dead-letter"][0].headers)["stream-cd.reason"][:14]
b'not valid JSON'
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stream_cd.committed_outputs import CommittedOutputs
from stream_cd.decisions import Decision
from stream_cd.errors import TransportError
from stream_cd.events import Event
from stream_cd.idle import IdleExit
from stream_cd.observe.hooks import WorkerObserver
from stream_cd.checkpointing import Checkpointing
from stream_cd.rebalancing import MAX_FAILURES, Rebalancing
from stream_cd.pipeline import Outcome, Pipeline, learned
from stream_cd.report import decision_line
from stream_cd.state.records import store_key
from stream_cd.state.signing import dump_state
from stream_cd.transport import (DEAD_LETTER_ORIGIN, DEAD_LETTER_REASON, DEAD_LETTER_TRUNCATED, Checkpoint, DecodedBatch,
                                 Message, Topics, Transport)

__all__ = ["WorkerStats", "Worker", "run_worker", "DEFAULT_COMMIT_EVENTS", "DEFAULT_COMMIT_SECONDS",
           "DEFAULT_MAX_SNAPSHOT_BYTES", "MAX_FAILURES"]

log = logging.getLogger("stream_cd.worker")

# With checkpoints, a commit pickles and signs every model key changed since the last one, and
# decisions become visible to read_committed subscribers only when it lands. Two seconds keeps
# decisions prompt and a crash's re-work small; 20,000 events bounds the re-work under heavy load.
DEFAULT_COMMIT_EVENTS = 20_000
DEFAULT_COMMIT_SECONDS = 2.0
# A model key's snapshot larger than this is not written (the key goes on unsaved): the
# checkpoints topic takes messages up to this size, and a restore holds one of them per
# key. A logreg champion and shadow weigh 13 KB to 170 KB.
DEFAULT_MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024


@dataclass
class WorkerStats:
    consumed: int = 0
    dead_letters: int = 0
    decisions: int = 0
    batches: int = 0
    commits: int = 0
    checkpoints_written: int = 0
    restored: int = 0
    refused_checkpoints: int = 0
    checkpoint_bytes: int = 0
    unsaved: int = 0
    stopped_by: str = ""


class Worker(Checkpointing, Rebalancing):
    """Runs a pipeline over a transport until told to stop."""

    def __init__(
        self,
        transport: Transport,
        pipeline: Pipeline,
        topics: Topics,
        *,
        state_key: bytes | None = None,
        commit_every_events: int = DEFAULT_COMMIT_EVENTS,
        commit_every_s: float = DEFAULT_COMMIT_SECONDS,
        batch_size: int = 2000,
        poll_timeout: float = 0.5,
        on_decision: Callable[[Decision], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_outcome: Callable[[Message, Outcome], None] | None = None,
        on_prediction: Callable[[dict], None] | None = None,
        observer: WorkerObserver | None = None,
        max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
        outputs: CommittedOutputs | None = None,
        dead_letter_max_bytes: int | None = None,
    ) -> None:
        """``outputs``: the local outputs (``on_decision``, ``on_prediction`` callbacks wrapped
        by it, and the decision log lines) are written when their commit lands.
        ``dead_letter_max_bytes``: a dead letter holds at most that much of its message (what
        the dead-letter topic takes), and then says the message's full size."""
        self.transport = transport
        self.pipeline = pipeline
        self.topics = topics
        self.state_key = state_key
        self.commit_every_events = commit_every_events
        self.commit_every_s = commit_every_s
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.on_decision = on_decision
        self.on_batch = on_batch
        self.on_outcome = on_outcome
        self.on_prediction = on_prediction
        self.observer = observer
        self.max_snapshot_bytes = max_snapshot_bytes
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self._deleted: set[str] = set()  # records too large to snapshot whose older snapshots were deleted
        self.outputs = outputs
        self._log_decision = _log_decision if outputs is None else outputs.wrap(_log_decision)
        if outputs is not None:
            outputs.landed(transport.landed())
        self.stats = WorkerStats()
        self._uncommitted = 0
        self._failures = 0
        self._in_flight = False  # a commit handed to the transport without waiting for it
        self._fell_back: set[str] = set()
        self._refused: set[str] = set()  # records of which a stored version was refused in the last restore
        self._last_commit = time.monotonic()
        if observer is not None:
            observer.attach(self)

    # -- the loop ------------------------------------------------------------------------

    def run(
        self,
        *,
        max_events: int | None = None,
        idle_exit: float | None = None,
        stop: threading.Event | None = None,
        end_of_input_exits: bool = True,
    ) -> WorkerStats:
        """Run until ``max_events`` new messages (not counting those a restore reads again),
        ``idle_exit`` seconds with nothing new and nothing left to read (see
        :mod:`stream_cd.idle`), ``stop``, or (when ``end_of_input_exits``) an empty poll;
        commit at the end.

        An embedded transport's empty poll means the input is exhausted; Kafka waits.
        """
        stats = self.stats
        idle = IdleExit(idle_exit)
        while True:
            if stop is not None and stop.is_set():
                stats.stopped_by = "signal"
                break
            new = stats.consumed - self.pipeline.replayed  # messages read again by a restore do not count
            want = self.batch_size if max_events is None else min(self.batch_size, max_events - new)
            if want <= 0:
                stats.stopped_by = "max-events"
                break
            try:
                step = self._step(want, end_of_input_exits)
                if step == "idle" and idle.quiet(waiting=not self.transport.assignment() or not self.transport.fetching()):
                    stopped_by = idle.stop_reason(self.transport.behind())
                    if stopped_by is not None:
                        stats.stopped_by = stopped_by
                        break
            except TransportError as err:  # a failed poll or commit, or a fetch process gone
                self._recover(err)
                idle.restart()  # an outage and the recovery from it are not idleness
                continue
            if step == "end":
                stats.stopped_by = "end-of-input"
                break
            if step == "batch":
                idle.busy()
            elif step == "rebalanced":  # the held partitions were just restored and sought
                idle.restart()
        try:
            self.commit(force=True)  # every changed key's snapshot: a restart need not replay
        except TransportError as err:
            log.error("the final commit failed (%s): the work since the last commit is not kept, and the "
                      "partitions' next owner resumes from the last commit", err,
                      extra={"event": "commit_failure", "fields": {"error": str(err), "final": True}})
            if self.observer is not None:
                self.observer.failed(err)
            self.transport.abort()
            self._outputs_landed(rollback=True)
            stats.stopped_by += ", final commit failed"
        return stats

    def _step(self, want: int, end_of_input_exits: bool) -> str:
        """One poll and what follows it: ``batch``, ``idle``, ``rebalanced`` or ``end``."""
        messages = self.transport.poll(want, self.poll_timeout)
        self._outputs_landed()
        changes = self.transport.rebalance_events()
        if changes:
            self._rebalanced(changes)
            return "rebalanced"  # the batch was fetched before the restore; the seeks fetch it again
        if not messages:
            if self._commit_due():
                self.commit(wait=False)
            return "end" if end_of_input_exits else "idle"
        self._process(messages)
        self.stats.consumed += len(messages)
        self.stats.batches += 1
        self._uncommitted += len(messages)
        if self._commit_due():
            self.commit(wait=False)
        if self.on_batch is not None:
            self.on_batch(len(messages))
        return "batch"

    def _process(self, messages) -> None:
        every = self.on_outcome is not None  # then each outcome is handed over as it happens
        observer = self.observer
        if isinstance(messages, DecodedBatch):  # decoded by the transport: learn from the events
            batch = messages
            if not every:
                results = self.pipeline.take_batch(batch.events, batch.timestamps, batch.offsets, batch.partition)
                for i, outcome in results:
                    self._emit(batch[i], outcome)
                if observer is not None:
                    observer.learned(_labeled_times(batch, results), time.time())
                return
            take = self.pipeline.take
            outcomes = (take(e, t, batch.partition, o) for e, t, o in zip(batch.events, batch.timestamps, batch.offsets))
        else:
            process = self.pipeline.process
            outcomes = (process(m.value, m.timestamp, m.partition, m.offset) for m in messages)
        times: list[int] | None = None if observer is None else []
        for message, outcome in zip(messages, outcomes):
            if every or outcome.invalid is not None or outcome.decisions or outcome.served is not None:
                self._emit(message, outcome)
            if times is not None and learned(outcome):
                times.append(message.timestamp)
        if times is not None:
            observer.learned(times, time.time())  # type: ignore[union-attr]

    def _emit(self, message: Message, outcome: Outcome) -> None:
        """What one message led to: a dead letter, decisions, a served prediction."""
        transport, topics, stats = self.transport, self.topics, self.stats
        observer = self.observer
        if outcome.invalid is not None:
            _dead_letter(transport, topics, message, outcome.invalid, self.dead_letter_max_bytes)
            stats.dead_letters += 1
            if observer is not None:
                observer.dead_letter(outcome.invalid)
        elif outcome.decisions:
            for decision in outcome.decisions:
                self._decided(decision)
        if outcome.served is not None and self.on_prediction is not None:
            self.on_prediction(outcome.served)
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)

    def _decided(self, decision: Decision) -> None:
        """Send a decision to the decisions topic (in the open transaction), log and report it."""
        self.transport.send(self.topics.decisions, decision.model_key.encode(), decision.to_json())
        self.stats.decisions += 1
        if log.isEnabledFor(logging.INFO):
            self._log_decision(decision)
        if self.observer is not None:
            self.observer.decision(decision)
        if self.on_decision is not None:
            self.on_decision(decision)

    # -- commits and state --------------------------------------------------------------

    def _commit_due(self) -> bool:
        if self._uncommitted >= self.commit_every_events:
            return True
        return self._uncommitted > 0 and time.monotonic() - self._last_commit >= self.commit_every_s

    def commit(self, wait: bool = True, force: bool = False) -> None:
        """Outputs, changed state and offsets, in that order (one transaction on Kafka).

        The changed state is every held partition's record and the snapshots that are due
        (:mod:`stream_cd.state.schedule`; every changed model key's with ``force``).
        ``wait=False`` lets the transport land the commit while the worker goes on (see
        :meth:`Transport.commit`); a failure then raises from a later call, and the worker
        rolls back to the last commit that landed.

        The worker goes on with the unpickled copy of each state it snapshots: pickling
        leaves the original reading its attributes from slow dicts (see
        :mod:`stream_cd.state.pickling`), and the copy is the same state.
        """
        started = time.perf_counter()
        checkpoints: list[Checkpoint] = []
        snapshots = 0
        if self.state_key is not None:
            with _collections_paused():
                for record, state, partitions, slot in self.pipeline.take_snapshots(force):
                    checkpoints += self._snapshot(record, state, partitions, slot, going_on=not force)
            snapshots = len(checkpoints)
            for record, state, partitions, slot in self.pipeline.take_partition_records():
                checkpoints.append(Checkpoint(store_key(record, slot), dump_state(state, self.state_key, record), partitions))
        self.transport.commit(checkpoints, wait=wait)
        if self.outputs is not None:
            self.outputs.handed_over()
        self._outputs_landed()
        if wait or self._in_flight:
            self._failures = 0  # a commit has landed: this one, or the one before it
        self._in_flight = not wait
        self.stats.commits += 1
        self.stats.checkpoints_written += snapshots
        self.stats.checkpoint_bytes += sum(len(cp.blob or b"") for cp in checkpoints)
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        if self.observer is not None:
            self.observer.committed(time.perf_counter() - started, snapshots)

    def _outputs_landed(self, rollback: bool = False) -> None:
        """Write the held outputs of the commits that have landed; on a ``rollback`` (nothing
        in flight any more), drop the rest."""
        if self.outputs is not None:
            (self.outputs.drop if rollback else self.outputs.landed)(self.transport.landed())


@contextmanager
def _collections_paused() -> Iterator[None]:
    """No garbage collection while snapshots are pickled and unpickled: each makes and frees
    objects by the thousand, and the collections that set off walk every model key's
    objects, which cost more than the pickling itself once there are thousands of keys."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _labeled_times(batch: DecodedBatch, results: list[tuple[int, Outcome]]) -> list[int]:
    """The timestamps of a decoded batch's labeled events and feedback that were taken in
    (not rejected): those whose labels the model keys learned."""
    events, timestamps = batch.events, batch.timestamps
    rejected = [i for i, outcome in results if outcome.invalid is not None]
    if not rejected:
        return [t for e, t in zip(events, timestamps) if type(e) is Event and e.y is not None]  # type: ignore[union-attr]
    out = set(rejected)
    return [t for i, (e, t) in enumerate(zip(events, timestamps))
            if i not in out and type(e) is Event and e.y is not None]  # type: ignore[union-attr]


def _log_decision(decision: Decision) -> None:
    log.info("decision %s", _decision_text(decision), extra={"event": "decision", "fields": {"decision": decision.to_dict()}})


def _decision_text(decision: Decision) -> str:
    """A decision in a log line: the terminal's decision line without its column padding."""
    return " ".join(decision_line(decision.to_dict()).split())


def _dead_letter(transport: Transport, topics: Topics, message: Message, reason: str, max_bytes: int | None) -> None:
    """Send ``message`` to the dead-letter topic with why and where it came from. A message
    larger than the topic takes keeps its start, and says its full size: a dead letter the
    broker refused would fail every commit (the whole message stays at its origin)."""
    origin = f"{message.topic}/{message.partition}/{message.offset}".encode()
    headers = [(DEAD_LETTER_REASON, reason.encode()), (DEAD_LETTER_ORIGIN, origin)]
    value = message.value or b""
    if max_bytes is not None and len(value) > max_bytes:
        headers.append((DEAD_LETTER_TRUNCATED, str(len(value)).encode()))
        value = value[:max_bytes]
    transport.send(topics.dead_letter, message.key, value, headers)


def run_worker(
    transport: Transport,
    pipeline: Pipeline,
    topics: Topics,
    *,
    max_events: int | None = None,
    idle_exit: float | None = None,
    stop: threading.Event | None = None,
    end_of_input_exits: bool = True,
    **options,
) -> WorkerStats:
    """Build a :class:`Worker` with ``options`` and run it."""
    worker = Worker(transport, pipeline, topics, **options)
    return worker.run(max_events=max_events, idle_exit=idle_exit, stop=stop, end_of_input_exits=end_of_input_exits)
