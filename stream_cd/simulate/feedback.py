"""Delayed feedback: a labeled stream split into requests and their later feedback.

Each labeled event becomes a request (its features, no label) and, some events
later in the stream, a feedback event (its ``id`` and ``y``, no features), as
clicks, purchases and fraud reports reach a production system. The delay of
each label is drawn uniformly from ``min_delay`` to ``max_delay`` events,
counted in requests: the feedback of request ``i`` comes just before request
``i + delay``, or at the end of the stream. A feedback event's time is that
of the request it comes before, so event time moves forward.

>>> events = [{"key": "k", "id": f"e{i}", "ts": i, "x": {"f": i}, "y": i % 2 == 0} for i in range(4)]
>>> [(e["id"], "y" in e) for e in delayed_feedback(events, 1, 1, seed=0)]
[('e0', False), ('e0', True), ('e1', False), ('e1', True), ('e2', False), ('e2', True), ('e3', False), ('e3', True)]
>>> [(e["id"], "y" in e) for e in delayed_feedback(events, 2, 2, seed=0)][:5]
[('e0', False), ('e1', False), ('e0', True), ('e2', False), ('e1', True)]
>>> [e for e in delayed_feedback(events, 0, 0, seed=0)][:2]
[{'key': 'k', 'id': 'e0', 'ts': 0, 'x': {'f': 0}}, {'key': 'k', 'id': 'e0', 'ts': 0, 'y': True}]
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from typing import Any

from stream_cd.errors import ConfigError

__all__ = ["delayed_feedback", "parse_delay"]


def parse_delay(text: str) -> tuple[int, int]:
    """``N`` or ``MIN:MAX`` events of delay.

    >>> parse_delay("500"), parse_delay("0:5000")
    ((500, 500), (0, 5000))
    """
    try:
        low, _, high = text.partition(":")
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise ConfigError(f"feedback delay {text!r} is not N or MIN:MAX (whole numbers of events)") from None
    if not 0 <= lo <= hi:
        raise ConfigError(f"feedback delay {text!r}: need 0 <= MIN <= MAX")
    return lo, hi


def delayed_feedback(events: Iterable[dict[str, Any]], min_delay: int, max_delay: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Requests and their feedback, each label ``min_delay`` to ``max_delay`` requests late."""
    rng = random.Random(seed)
    due: list[tuple[int, int, dict[str, Any]]] = []  # (request index it comes before, tie-break, feedback)
    for i, event in enumerate(events):
        if "id" not in event:
            raise ConfigError(f"event {i} has no id: feedback needs the id of its request")
        while due and due[0][0] <= i:
            feedback = heapq.heappop(due)[2]
            if "ts" in event:
                feedback["ts"] = event["ts"]  # it arrives now, before this request
            yield feedback
        yield {k: v for k, v in event.items() if k != "y"}
        feedback = {k: v for k, v in event.items() if k in ("key", "id", "ts", "y")}
        delay = rng.randint(min_delay, max_delay)
        if delay == 0:
            yield feedback
        else:
            heapq.heappush(due, (i + delay, i, feedback))
    while due:
        yield heapq.heappop(due)[2]
