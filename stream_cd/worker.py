"""The worker loop, the same on every transport.

Poll a batch; run each message through the pipeline; send its dead letters
and decisions; then commit, which makes the outputs durable before it marks
the batch's input as processed. A crash between the two repeats the batch
(at-least-once); it never loses one.

>>> from stream_cd.embedded import EmbeddedTransport
>>> from stream_cd.pipeline import Pipeline
>>> t = EmbeddedTransport([b'{"x": {"a": 1}, "y": true}', b'not json'])
>>> stats = run_worker(t, Pipeline(), Topics())
>>> stats.consumed, stats.dead_letters, t.committed
(2, 1, 2)
>>> dict(t.topics["stream-cd.dead-letter"][0].headers)["stream-cd.reason"][:14]
b'not valid JSON'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stream_cd.decisions import Decision
from stream_cd.pipeline import Outcome, Pipeline
from stream_cd.transport import DEAD_LETTER_ORIGIN, DEAD_LETTER_REASON, Message, Topics, Transport

__all__ = ["WorkerStats", "run_worker"]


@dataclass
class WorkerStats:
    consumed: int = 0
    dead_letters: int = 0
    decisions: int = 0
    batches: int = 0
    stopped_by: str = ""


def _dead_letter(transport: Transport, topics: Topics, message: Message, reason: str) -> None:
    origin = f"{message.topic}/{message.partition}/{message.offset}".encode()
    headers = [(DEAD_LETTER_REASON, reason.encode()), (DEAD_LETTER_ORIGIN, origin)]
    transport.send(topics.dead_letter, message.key, message.value or b"", headers)


def run_worker(
    transport: Transport,
    pipeline: Pipeline,
    topics: Topics,
    *,
    max_events: int | None = None,
    idle_exit: float | None = None,
    batch_size: int = 2000,
    poll_timeout: float = 0.5,
    stop: threading.Event | None = None,
    on_decision: Callable[[Decision], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_outcome: Callable[[Message, Outcome], None] | None = None,
    end_of_input_exits: bool = True,
) -> WorkerStats:
    """Run until ``max_events`` messages, ``idle_exit`` seconds with nothing new, or ``stop``.

    An embedded transport's empty poll means the input is exhausted, which ends
    the run when ``end_of_input_exits``; Kafka passes False and waits.
    """
    stats = WorkerStats()
    idle_since = time.monotonic()
    process = pipeline.process
    while True:
        if stop is not None and stop.is_set():
            stats.stopped_by = "signal"
            break
        want = batch_size if max_events is None else min(batch_size, max_events - stats.consumed)
        if want <= 0:
            stats.stopped_by = "max-events"
            break
        messages = transport.poll(want, poll_timeout)
        if not messages:
            if end_of_input_exits:
                stats.stopped_by = "end-of-input"
                break
            if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                stats.stopped_by = "idle"
                break
            continue
        idle_since = time.monotonic()
        for message in messages:
            outcome = process(message.value, message.timestamp)
            if outcome.invalid is not None:
                _dead_letter(transport, topics, message, outcome.invalid)
                stats.dead_letters += 1
            elif outcome.decisions:
                for decision in outcome.decisions:
                    transport.send(topics.decisions, decision.model_key.encode(), decision.to_json())
                    stats.decisions += 1
                    if on_decision is not None:
                        on_decision(decision)
            if on_outcome is not None:
                on_outcome(message, outcome)
        transport.commit()
        stats.consumed += len(messages)
        stats.batches += 1
        if on_batch is not None:
            on_batch(len(messages))
    return stats
